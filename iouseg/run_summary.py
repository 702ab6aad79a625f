"""What happened in a pipeline run, read back from ML Metadata and the Evaluator's TFMA output.

Nothing here trusts the process that ran the pipeline: every fact comes from the metadata store and
the artifacts it points to, so the same summary can be printed for any past run.
"""

import dataclasses
import json
import math
import os

import tensorflow as tf
import tensorflow_model_analysis as tfma
from ml_metadata.proto import metadata_store_pb2
from tensorflow_model_analysis.writers import eval_config_writer

from components import dedup_pusher, encoder_trainer, iou_metric

# The TFMA output reader the model card uses too; its names are part of this module's interface.
from components.model_card import content as model_card_content
from components.model_card.content import BASELINE, CANDIDATE, OVERALL, slice_name, sliced_metrics  # noqa: F401
from iouseg import mlmd_store

# slice name -> model name (CANDIDATE, BASELINE) -> metric name -> value (float, or an array).
SlicedMetrics = dict[str, dict[str, dict[str, object]]]
# Why a run has no baseline: the Resolver found no blessed model, or ServedModelBaseline (`--baseline
# serving_dir`) found nothing served and handed the Evaluator an artifact holding no model.
NO_BASELINE_FIRST = 'first blessed model'
NO_BASELINE_NOTHING_SERVED = 'nothing served yet'


@dataclasses.dataclass
class RunSummary:
  run_id: str
  component_states: dict[str, str]  # node id -> 'executed', 'cached', 'failed', ...
  candidate_metrics: dict[str, float]  # metric name -> value on the eval split (overall slice)
  baseline_metrics: dict[str, float]  # empty when there was no baseline
  blessed: bool | None
  failures: list[str]  # why the blessing was refused, one line per failed rule
  pushed: bool
  pushed_destination: str | None
  already_serving: bool
  class_names: list[str] = dataclasses.field(default_factory=list)  # in class-id order
  slices: SlicedMetrics = dataclasses.field(default_factory=dict)  # every slice, overall included
  # Artifact locations, for whoever reviews the run (`iouseg report`, the notebook).
  evaluation_uri: str | None = None
  model_uri: str | None = None  # the candidate the Evaluator judged
  baseline_model_uri: str | None = None  # None when there was none, or it held no model
  # Why the Evaluator had no baseline model, when it had none (see `baseline_line`).
  baseline_none: str = NO_BASELINE_FIRST
  examples_uri: str | None = None  # the Evaluator's examples; it reads their eval split
  model_run_uri: str | None = None  # the Trainer's TensorBoard logs
  # What the Trainer started from: its `base_model` input in ML Metadata (warm start), or None.
  trainer_ran: bool = False
  # The Trainer's augmentation in one line, the classes a mirror swapped included (trainer.augment).
  augmentation: str | None = None
  started_from_id: int | None = None
  started_from_uri: str | None = None
  # The weights file the encoder started from (--encoder-weights), from the model artifact.
  encoder_weights: str | None = None
  encoder_weights_sha256: str | None = None
  # The Tuner's best trial (run with --tune-trials): hyperparameter -> value, its score, trials done.
  tuned: dict[str, object] = dataclasses.field(default_factory=dict)
  tuned_score: float | None = None
  tuned_trials: int = 0
  # MaskWriter (run with --infer-data): its artifact, the masks written, why none were.
  masks_uri: str | None = None
  mask_count: int = 0
  masks_failed: int = 0  # records whose image could not be segmented (named in index.csv)
  masks_skipped: str | None = None


def _state_name(execution) -> str:
  state = metadata_store_pb2.Execution.State.Name(execution.last_known_state)
  return {'COMPLETE': 'executed', 'CACHED': 'cached'}.get(state, state.lower())


def _uri(artifacts: dict[str, list], key: str) -> str | None:
  return artifacts[key][0].uri if artifacts.get(key) else None


def _holds_saved_model(model_uri: str) -> bool:
  """A Model artifact's directory holds a SavedModel (TFX's `Format-Serving` layout or the old one
  with the model at its root)."""
  return any(
    tf.io.gfile.exists(os.path.join(path, 'saved_model.pb'))
    for path in (os.path.join(model_uri, 'Format-Serving'), model_uri)
  )


def baseline_line(summary: 'RunSummary') -> str:
  """'Baseline mean IoU: <value>', or 'Baseline: none (<why>)'."""
  baseline = summary.baseline_metrics.get(iou_metric.MEAN_IOU)
  if baseline is None:
    return f'Baseline: none ({summary.baseline_none})'
  return f'Baseline mean IoU: {format_value(iou_metric.MEAN_IOU, baseline)}'


def _int_property(artifact, name: str) -> int | None:
  value = artifact.custom_properties.get(name)
  return None if value is None else value.int_value


def _string_property(artifact, name: str) -> str | None:
  value = artifact.custom_properties.get(name)
  return None if value is None else value.string_value


def class_names(evaluation_uri: str) -> list[str]:
  """The class names in class-id order, from the evaluation's own `ClassIoU` metric configs."""
  return model_card_content.class_names(eval_config_writer.load_eval_run(evaluation_uri)[0])


def format_value(name: str, value: float) -> str:
  """4 decimals; a NaN class IoU is an absent class, any other NaN is undefined (no valid pixels)."""
  if not math.isnan(value):
    return f'{value:.4f}'
  return 'absent' if name.startswith(iou_metric.CLASS_IOU_PREFIX) else 'undefined'


def _where(slice_text: str) -> str:
  return '' if slice_text == OVERALL else f' on slice {slice_text}'


def _change_line(
  name: str, where: str, diff: float, slice_metrics: dict[str, dict[str, object]], change
) -> str:
  candidate = slice_metrics.get(CANDIDATE, {}).get(name, float('nan'))
  baseline = slice_metrics.get(BASELINE, {}).get(name, float('nan'))
  values = f'candidate {format_value(name, candidate)} vs baseline {format_value(name, baseline)}'
  if math.isnan(diff):
    return f'{name}{where}: {values}: the change cannot be measured'
  if change.HasField('relative'):
    return f'{name}{where}: {values}; relative change required >= {change.relative.value:g}'
  allowed = change.absolute.value
  rule = (
    'the candidate may not be worse than the baseline'
    if abs(allowed) < 1e-6
    else f'at most {-allowed:g} may be lost'
  )
  return f'{name}{where}: {values}, change {diff:+.4f}; {rule}'


def _failure_line(failure, slice_text: str, slice_metrics: dict[str, dict[str, object]]) -> str:
  """TFMA leaves `message` empty for threshold failures; say which rule failed, where, with the
  numbers (a change rule: both models' values)."""
  name, where = failure.metric_key.name, _where(slice_text)
  if failure.message:  # e.g. 'Metric not found.'
    return f'{name}{where}: {failure.message.strip()}'
  value = failure.metric_value.double_value.value
  threshold = failure.metric_threshold
  if failure.metric_key.is_diff:
    return _change_line(name, where, value, slice_metrics, threshold.change_threshold)
  return (
    f'{name} = {format_value(name, value)}{where}: required '
    f'{model_card_content.bound_text(threshold.value_threshold)}'
  )


def validation_failures(evaluation_uri: str, slices: SlicedMetrics | None = None) -> list[str]:
  """One line per failed blessing rule, with the metric, the slice, its value(s) and the rule."""
  slices = sliced_metrics(evaluation_uri) if slices is None else slices
  validation = tfma.load_validation_result(evaluation_uri)
  lines = []
  per_slice = sorted(
    ((slice_name(v.slice_key), v) for v in validation.metric_validations_per_slice),
    key=lambda named: (named[0] != OVERALL, named[0]),
  )  # the whole split first
  for slice_text, validations in per_slice:
    for failure in validations.failures:
      lines.append(_failure_line(failure, slice_text, slices.get(slice_text, {})))
  if validation.missing_thresholds:
    lines.append('not validated: a configured threshold had no metric to check')
  for spec in validation.missing_slices:
    lines.append(f'not validated: slice {spec} was missing from the eval data')
  return lines


def _read_evaluator(summary: RunSummary, inputs: dict[str, list], outputs: dict[str, list]) -> None:
  summary.evaluation_uri = _uri(outputs, 'evaluation')
  summary.model_uri = _uri(inputs, 'model')
  baseline_uri = _uri(inputs, 'baseline_model')
  if baseline_uri is not None and not _holds_saved_model(baseline_uri):
    summary.baseline_none = NO_BASELINE_NOTHING_SERVED
    baseline_uri = None
  summary.baseline_model_uri = baseline_uri
  summary.examples_uri = _uri(inputs, 'examples')
  summary.slices = sliced_metrics(summary.evaluation_uri)
  overall = summary.slices.get(OVERALL, {})
  summary.candidate_metrics = overall.get(CANDIDATE, {})
  summary.baseline_metrics = overall.get(BASELINE, {})
  summary.class_names = class_names(summary.evaluation_uri)
  summary.blessed = bool(_int_property(outputs['blessing'][0], 'blessed'))
  summary.failures = validation_failures(summary.evaluation_uri, summary.slices)


def _read_tuner(summary: RunSummary, outputs: dict[str, list]) -> None:
  """TFX's Tuner files: the best trial's HyperParameters config and every completed trial, best
  first (tfx/components/tuner/executor.py)."""
  with tf.io.gfile.GFile(
    os.path.join(_uri(outputs, 'best_hyperparameters'), 'best_hyperparameters.txt')
  ) as f:
    summary.tuned = json.load(f).get('values', {})
  if outputs.get('tuner_results'):
    with tf.io.gfile.GFile(os.path.join(_uri(outputs, 'tuner_results'), 'tuner_results.json')) as f:
      trials = json.load(f)
    summary.tuned_trials = len(trials)
    summary.tuned_score = trials[0]['score'] if trials else None


def latest_run(metadata_path: str, pipeline_name: str) -> RunSummary:
  """The summary of the most recent run of `pipeline_name` recorded in the SQLite store."""
  store = mlmd_store.open_store(metadata_path)
  run = mlmd_store.latest_run_context(store, metadata_path, pipeline_name)
  summary = RunSummary(run.name, {}, {}, {}, None, [], False, None, False)
  for execution in sorted(store.get_executions_by_context(run.id), key=lambda e: e.id):
    node = mlmd_store.node_id(store, execution)
    summary.component_states[node] = _state_name(execution)
    outputs = mlmd_store.artifacts(store, execution, mlmd_store.OUTPUT_EVENTS)
    if node == 'Trainer' and outputs.get('model_run'):
      summary.model_run_uri = _uri(outputs, 'model_run')
    if node == 'Trainer':  # run_fn starts from `base_model` whenever it is given, or fails
      base = mlmd_store.artifacts(store, execution, mlmd_store.INPUT_EVENTS).get('base_model')
      summary.trainer_ran = True
      summary.started_from_id = base[0].id if base else None
      summary.started_from_uri = base[0].uri if base else None
      summary.augmentation = model_card_content.recorded_augmentation(_uri(outputs, 'model'))
      for model in outputs.get('model', [])[:1]:
        summary.encoder_weights = _string_property(model, encoder_trainer.WEIGHTS_PATH_PROPERTY)
        summary.encoder_weights_sha256 = _string_property(
          model, encoder_trainer.WEIGHTS_SHA256_PROPERTY
        )
    if node == 'Evaluator' and outputs.get('evaluation'):
      _read_evaluator(
        summary, mlmd_store.artifacts(store, execution, mlmd_store.INPUT_EVENTS), outputs
      )
    if node == 'Tuner' and outputs.get('best_hyperparameters'):
      _read_tuner(summary, outputs)
    if node == 'MaskWriter' and outputs.get('masks'):
      masks = outputs['masks'][0]
      summary.masks_uri = masks.uri
      summary.mask_count = _int_property(masks, 'mask_count') or 0
      summary.masks_failed = _int_property(masks, 'failed_count') or 0
      summary.masks_skipped = _string_property(masks, 'skipped')
    if node == 'Pusher' and outputs.get('pushed_model'):
      pushed = outputs['pushed_model'][0]
      summary.pushed = bool(_int_property(pushed, 'pushed'))
      summary.pushed_destination = _string_property(pushed, 'pushed_destination')
      summary.already_serving = bool(_int_property(pushed, dedup_pusher.ALREADY_SERVING_KEY))
  return summary


def evaluation_uris(metadata_path: str, pipeline_name: str) -> list[str]:
  """Every TFMA output the pipeline's Evaluator wrote, oldest first (a cached Evaluator reuses an
  earlier one: each appears once)."""
  store = mlmd_store.open_store(metadata_path)
  pipeline = store.get_context_by_type_and_name('pipeline', pipeline_name)
  if pipeline is None:
    raise LookupError(f'no pipeline {pipeline_name!r} in {metadata_path}')
  evaluations = {}
  for execution in store.get_executions_by_context(pipeline.id):
    if mlmd_store.node_id(store, execution) == 'Evaluator':
      for artifact in mlmd_store.artifacts(store, execution, mlmd_store.OUTPUT_EVENTS).get(
        'evaluation', []
      ):
        evaluations[artifact.id] = artifact.uri
  return [evaluations[k] for k in sorted(evaluations)]


def _metric_lines(summary: RunSummary) -> list[str]:
  metrics = summary.candidate_metrics
  lines = [f'Eval mean IoU: {format_value(iou_metric.MEAN_IOU, metrics[iou_metric.MEAN_IOU])}']
  lines += [
    f'  {label:<28} {format_value(name, metrics[name])}'
    for name, label in (
      (iou_metric.MEAN_IOU_MODEL_RESOLUTION, 'mean IoU (model resolution)'),
      (iou_metric.FREQUENCY_WEIGHTED_IOU, 'frequency-weighted IoU'),
      (iou_metric.PIXEL_ACCURACY, 'pixel accuracy'),
      (iou_metric.SOFT_IOU_LOSS, 'soft IoU loss'),
    )
    if name in metrics
  ]
  for class_name in summary.class_names:
    name = iou_metric.class_iou_name(class_name)
    if name in metrics:
      note = ' (in neither labels nor predictions)' if math.isnan(metrics[name]) else ''
      lines.append(f'  {class_name:<20} IoU {format_value(name, metrics[name])}{note}')
  return lines


def _slice_lines(summary: RunSummary) -> list[str]:
  sliced = {name: models for name, models in summary.slices.items() if name != OVERALL}
  if not sliced:
    return []
  lines = ['Slices (mean IoU, candidate / baseline):']
  for name, models in sorted(sliced.items()):
    values = [
      format_value(iou_metric.MEAN_IOU, models[model][iou_metric.MEAN_IOU])
      for model in (CANDIDATE, BASELINE)
      if iou_metric.MEAN_IOU in models.get(model, {})
    ]
    lines.append(f'  {name:<40} {" / ".join(values)}')
  return lines


def format_summary(summary: RunSummary, log_path: str | None = None) -> str:
  """The summary `iouseg run` prints; `log_path`, the run's third-party log, is its last line."""
  lines = [f'Run {summary.run_id}', 'Components:']
  lines += [f'  {node:<32} {state}' for node, state in summary.component_states.items()]
  if summary.trainer_ran:
    lines.append(
      'Started from: cold start'
      if summary.started_from_id is None
      else f'Started from: model {summary.started_from_id} ({summary.started_from_uri})'
    )
    if summary.encoder_weights:  # a warm start then replaces these initial weights
      weights = (
        f'encoder weights {summary.encoder_weights} (sha256 {summary.encoder_weights_sha256})'
      )
      lines[-1] = (
        f'Started from: {weights}'
        if summary.started_from_id is None
        else f'{lines[-1]}, after {weights}'
      )
  if summary.augmentation:
    lines.append(f'Augmentation: {summary.augmentation}')
  if summary.tuned:
    score = (
      ''
      if summary.tuned_score is None
      else f', val_mean_iou {format_value("val_mean_iou", summary.tuned_score)}'
    )
    lines.append(
      f'Tuned (best of {summary.tuned_trials} trials{score}): '
      + ', '.join(
        f'{name}={value:.4g}' if isinstance(value, float) else f'{name}={value}'
        for name, value in sorted(summary.tuned.items())
      )
    )
  if iou_metric.MEAN_IOU in summary.candidate_metrics:
    lines += _metric_lines(summary)
  lines.append(baseline_line(summary))
  lines += _slice_lines(summary)
  if summary.blessed is not None:
    lines.append('Blessed: yes' if summary.blessed else 'Blessed: NO')
    lines += [f'  failed: {failure}' for failure in summary.failures]
  if summary.pushed:
    note = (
      ' (this model was already serving there; no new version)' if summary.already_serving else ''
    )
    lines.append(f'Pushed to: {summary.pushed_destination}{note}')
  else:
    lines.append('Pushed: no')
  if summary.masks_uri:
    lines.append(
      f'Masks: none, {summary.masks_skipped}'
      if summary.masks_skipped
      else f'Masks: {summary.mask_count} written to {summary.masks_uri} (index.csv)'
      + (
        f'; {summary.masks_failed} records not segmented, named with the reason in index.csv'
        if summary.masks_failed
        else ''
      )
    )
  if log_path:
    lines.append(f'Log (TFX, Beam, TensorFlow): {log_path}')
  return '\n'.join(lines)
