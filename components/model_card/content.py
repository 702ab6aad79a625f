"""What a model card says, gathered from the artifacts the ModelCardGenerator is given.

Every fact comes from an artifact (its id, URI, properties and files): the TFMA output for metrics,
slices and the blessing rules, the quarantine's summary and the statistics for the data, the blessing
for the baseline. The result is a plain dict (`card_content`) that the Jinja2 templates render.
"""

import json
import math
import os

import numpy as np
import tensorflow_model_analysis as tfma
from tensorflow_metadata.proto.v0 import statistics_pb2
from tensorflow_model_analysis.slicer import slicer_lib
from tensorflow_model_analysis.writers import eval_config_writer
from tfx.dsl.io import fileio
from tfx.types import artifact_utils

from components import iou_metric
from components.record_validation import quarantine as quarantine_lib

OVERALL = 'overall'
CANDIDATE, BASELINE = 'candidate', 'baseline'
_STATS_FILE = 'FeatureStats.pb'  # StatisticsGen's per-split file (TFX 1.16)
# Metrics shown for the whole eval split, in this order, with their labels.
SUMMARY_METRICS = (
  (iou_metric.MEAN_IOU, 'mean IoU (blessing metric, image resolution)'),
  (iou_metric.MEAN_IOU_MODEL_RESOLUTION, 'mean IoU (model resolution)'),
  (iou_metric.FREQUENCY_WEIGHTED_IOU, 'frequency-weighted IoU'),
  (iou_metric.PIXEL_ACCURACY, 'pixel accuracy'),
  (iou_metric.SOFT_IOU_LOSS, 'soft IoU loss'),
)
_QUARANTINE_REASONS_SHOWN = 5
# The Trainer's record of the augmentation it ran, in the model's assets.extra/ (trainer.augment).
AUGMENTATION_FILE = 'augmentation.json'


def slice_name(slice_key) -> str:
  columns = slicer_lib.deserialize_slice_key(slice_key)
  return ', '.join(f'{column}={value}' for column, value in columns) if columns else OVERALL


def _value(value):
  kind = value.WhichOneof('type')
  if kind == 'double_value':
    return value.double_value.value
  if kind == 'array_value':
    array = value.array_value
    values = {
      'INT32': array.int32_values,
      'INT64': array.int64_values,
      'FLOAT32': array.float32_values,
      'FLOAT64': array.float64_values,
    }.get(type(array).DataType.Name(array.data_type))
    return None if values is None else np.asarray(values).reshape(tuple(array.shape))
  return None


def sliced_metrics(evaluation_uri: str) -> dict[str, dict[str, dict[str, object]]]:
  """slice name -> model (CANDIDATE, BASELINE) -> metric name -> value."""
  result = {}
  for metrics_for_slice in tfma.load_metrics(evaluation_uri):
    per_model = result.setdefault(slice_name(metrics_for_slice.slice_key), {})
    for key_and_value in metrics_for_slice.metric_keys_and_values:
      value = _value(key_and_value.value)
      if key_and_value.key.is_diff or value is None:
        continue
      model = key_and_value.key.model_name or CANDIDATE
      per_model.setdefault(model, {})[key_and_value.key.name] = value
  return result


def _metric_name(metric: tfma.MetricConfig) -> str:
  """The TFMA key name a MetricConfig of this project emits its thresholded value under."""
  if metric.class_name == iou_metric.SegmentationIoU.__name__:
    return iou_metric.MEAN_IOU
  if metric.class_name == iou_metric.ClassIoU.__name__:
    return iou_metric.class_iou_name(json.loads(metric.config)['class_name'])
  config = json.loads(metric.config) if metric.config else {}
  return config.get('name', metric.class_name)


def class_names(eval_config: tfma.EvalConfig) -> list[str]:
  names = {}
  for spec in eval_config.metrics_specs:
    for metric in spec.metrics:
      if metric.class_name == iou_metric.ClassIoU.__name__:
        config = json.loads(metric.config)
        names[config['class_id']] = config['class_name']
  return [names[k] for k in sorted(names)]


def _slicing_text(specs) -> str:
  texts = []
  for spec in specs:
    if spec.feature_keys or spec.feature_values:
      texts.append(
        ', '.join(
          list(spec.feature_keys) + [f'{k}={v}' for k, v in sorted(spec.feature_values.items())]
        )
      )
    elif spec.slice_keys_sql:
      texts.append('SQL slice ' + spec.slice_keys_sql.split(' AS ')[-1].strip('`) '))
    else:
      texts.append(OVERALL)
  return ', '.join(texts) or OVERALL


def bound_text(bounds) -> str:
  """A value threshold's bounds as text, e.g. '>= 0.5' or '>= 0.1 and <= 0.9' ('' for none)."""
  parts = []
  if bounds.HasField('lower_bound'):
    parts.append(f'>= {bounds.lower_bound.value:g}')
  if bounds.HasField('upper_bound'):
    parts.append(f'<= {bounds.upper_bound.value:g}')
  return ' and '.join(parts)


def _threshold_rules(name: str, threshold: tfma.MetricThreshold, scope: str) -> list[dict]:
  rules = []
  bounds = bound_text(threshold.value_threshold)
  if bounds:
    rules.append({'metric': name, 'is_change': False, 'scope': scope, 'rule': f'{name} {bounds}'})
  change = threshold.change_threshold
  if change.HasField('absolute') or change.HasField('relative'):
    if change.HasField('relative'):
      text = f'{name}: relative change against the baseline >= {change.relative.value:g}'
    elif abs(change.absolute.value) < 1e-6:
      text = f'{name} not below the baseline'
    else:
      text = f'{name} loses at most {-change.absolute.value:g} against the baseline'
    rules.append({'metric': name, 'is_change': True, 'scope': scope, 'rule': text})
  return rules


def blessing_rules(eval_config: tfma.EvalConfig, validation, has_baseline: bool) -> list[dict]:
  """Each threshold of the EvalConfig as a rule: its text, where it is checked and its outcome
  ('passed', 'failed', or 'not checked' for a change rule without a baseline)."""
  failed = set()
  for per_slice in validation.metric_validations_per_slice:
    for failure in per_slice.failures:
      failed.add((failure.metric_key.name, failure.metric_key.is_diff))
  rules = []
  for spec in eval_config.metrics_specs:
    for metric in spec.metrics:
      name = _metric_name(metric)
      if metric.HasField('threshold'):
        rules += _threshold_rules(name, metric.threshold, 'every slice')
      for per_slice in metric.per_slice_thresholds:
        rules += _threshold_rules(name, per_slice.threshold, _slicing_text(per_slice.slicing_specs))
  for rule in rules:
    if rule['is_change'] and not has_baseline:
      rule['status'] = 'not checked (no baseline)'
    else:
      rule['status'] = 'failed' if (rule['metric'], rule['is_change']) in failed else 'passed'
  return rules


def _number(value) -> float | None:
  return None if value is None else float(value)


def _row(name: str, label: str, models: dict[str, dict[str, object]]) -> dict:
  candidate = _number(models.get(CANDIDATE, {}).get(name))
  baseline = _number(models.get(BASELINE, {}).get(name))
  change = (
    candidate - baseline
    if candidate is not None
    and baseline is not None
    and not math.isnan(candidate)
    and not math.isnan(baseline)
    else None
  )
  return {
    'name': name,
    'label': label,
    'candidate': candidate,
    'baseline': baseline,
    'change': change,
  }


def metrics_content(evaluation_uri: str) -> dict:
  eval_config = eval_config_writer.load_eval_run(evaluation_uri)[0]
  slices = sliced_metrics(evaluation_uri)
  overall = slices.get(OVERALL, {})
  names = class_names(eval_config)
  has_baseline = bool(overall.get(BASELINE))
  validation = tfma.load_validation_result(evaluation_uri)
  matrix = overall.get(CANDIDATE, {}).get(iou_metric.CONFUSION_MATRIX)
  pixel_shares = []
  if matrix is not None and np.sum(matrix) > 0:
    truth = np.sum(matrix, axis=1)
    pixel_shares = [
      {'class': name, 'pixels': int(truth[k]), 'share': float(truth[k] / truth.sum())}
      for k, name in enumerate(names)
      if k < len(truth)
    ]
  return {
    'has_baseline': has_baseline,
    'summary': [
      _row(name, label, overall)
      for name, label in SUMMARY_METRICS
      if name in overall.get(CANDIDATE, {})
    ],
    'classes': [_row(iou_metric.class_iou_name(name), name, overall) for name in names],
    'slices': [
      _row(iou_metric.MEAN_IOU, name, models)
      for name, models in sorted(slices.items())
      if name != OVERALL
    ],
    'rules': blessing_rules(eval_config, validation, has_baseline),
    'validation_ok': bool(validation.validation_ok),
    'eval_pixel_shares': pixel_shares,
  }


def split_counts(statistics=None, quarantine=None, examples=None) -> list[dict]:
  """Per split: records read, valid and quarantined (the quarantine summary), and the records
  StatisticsGen counted in the valid examples."""
  per_split = {}
  if quarantine is not None:
    summary = quarantine_lib.read_summary(quarantine.uri)
    for split, counts in summary.get('splits', {}).items():
      per_split.setdefault(split, {}).update(
        input=counts.get('input'),
        valid=counts.get('valid'),
        quarantined=counts.get('quarantined'),
        reasons=list(counts.get('first_reasons', []))[:_QUARANTINE_REASONS_SHOWN],
      )
  if statistics is not None:
    for split in artifact_utils.decode_split_names(statistics.split_names):
      path = os.path.join(artifact_utils.get_split_uri([statistics], split), _STATS_FILE)
      if fileio.exists(path):
        stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(
          fileio.open(path, 'rb').read()
        )
        per_split.setdefault(split, {})['statistics_records'] = sum(
          int(d.num_examples) for d in stats.datasets
        )
  if examples is not None:
    for split in artifact_utils.decode_split_names(examples.split_names):
      per_split.setdefault(split, {})
  order = {'train': 0, 'eval': 1}
  return [
    {
      'split': split,
      **{k: counts.get(k) for k in ('input', 'valid', 'quarantined', 'statistics_records')},
      'reasons': counts.get('reasons', []),
    }
    for split, counts in sorted(
      per_split.items(), key=lambda item: (order.get(item[0], 2), item[0])
    )
  ]


def lineage_row(role: str, artifact) -> dict | None:
  if artifact is None:
    return None
  return {'role': role, 'type': artifact.type_name, 'id': artifact.id, 'uri': artifact.uri}


def recorded_augmentation(model_uri: str | None) -> str | None:
  """The augmentation the Trainer ran (its one line, classes swapped by a mirror included), from
  the model artifact at `model_uri`; None when the model records none."""
  if not model_uri:
    return None
  from tfx.utils import path_utils

  path = os.path.join(path_utils.serving_model_path(model_uri), 'assets.extra', AUGMENTATION_FILE)
  if not fileio.exists(path):
    return None
  with fileio.open(path) as f:
    return json.load(f).get('augmentation')
