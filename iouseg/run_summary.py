"""What happened in a pipeline run, read back from ML Metadata and the Evaluator's TFMA output.

Nothing here trusts the process that ran the pipeline: every fact comes from the metadata store and
the artifacts it points to, so the same summary can be printed for any past run.
"""
import dataclasses
from typing import Dict, List, Optional

import tensorflow_model_analysis as tfma
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components import dedup_pusher, iou_metric

_OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)


@dataclasses.dataclass
class RunSummary:
  run_id: str
  component_states: Dict[str, str]  # node id -> 'executed', 'cached', 'failed', ...
  candidate_metrics: Dict[str, float]  # metric name -> value on the eval split (overall slice)
  baseline_metrics: Dict[str, float]  # empty when there was no baseline
  blessed: Optional[bool]
  failures: List[str]  # why the blessing was refused, one line per failed rule
  pushed: bool
  pushed_destination: Optional[str]
  already_serving: bool


def open_store(metadata_path: str) -> metadata_store.MetadataStore:
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = metadata_path
  config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  return metadata_store.MetadataStore(config)


def node_id(store, execution) -> str:
  for context in store.get_contexts_by_execution(execution.id):
    if store.get_context_types_by_id([context.type_id])[0].name == 'node':
      return context.name.split('.', 1)[-1]
  return execution.type


def _state_name(execution) -> str:
  state = metadata_store_pb2.Execution.State.Name(execution.last_known_state)
  return {'COMPLETE': 'executed', 'CACHED': 'cached'}.get(state, state.lower())


def _outputs(store, execution) -> Dict[str, list]:
  events = [e for e in store.get_events_by_execution_ids([execution.id]) if e.type in _OUTPUT_EVENTS]
  artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
  outputs = {}
  for event in events:
    key = event.path.steps[0].key if event.path.steps else ''
    outputs.setdefault(key, []).append(artifacts[event.artifact_id])
  return outputs


def _int_property(artifact, name: str) -> Optional[int]:
  value = artifact.custom_properties.get(name)
  return None if value is None else value.int_value


def _string_property(artifact, name: str) -> Optional[str]:
  value = artifact.custom_properties.get(name)
  return None if value is None else value.string_value


def overall_metrics(evaluation_uri: str) -> Dict[str, Dict[str, float]]:
  """{model name: {metric name: value}} of the overall (unsliced) eval split."""
  result = {}
  for metrics_for_slice in tfma.load_metrics(evaluation_uri):
    if metrics_for_slice.slice_key.single_slice_keys:
      continue
    for key_and_value in metrics_for_slice.metric_keys_and_values:
      # Diff keys hold candidate - baseline under the candidate's name: not the candidate's value.
      if key_and_value.key.is_diff or not key_and_value.value.HasField('double_value'):
        continue
      result.setdefault(key_and_value.key.model_name, {})[key_and_value.key.name] = (
          key_and_value.value.double_value.value)
  return result


def _failure_line(failure) -> str:
  """TFMA leaves `message` empty for threshold failures; say which rule failed, with the numbers."""
  name, value = failure.metric_key.name, failure.metric_value.double_value.value
  threshold = failure.metric_threshold
  if failure.metric_key.is_diff:
    change = threshold.change_threshold
    allowed = change.absolute.value if change.HasField('absolute') else change.relative.value
    return (f'{name} change against the baseline = {value:+.4f}: the candidate may not be worse '
            f'than the baseline (allowed change >= {allowed:g})')
  bounds = threshold.value_threshold
  rule = []
  if bounds.HasField('lower_bound'):
    rule.append(f'>= {bounds.lower_bound.value:g}')
  if bounds.HasField('upper_bound'):
    rule.append(f'<= {bounds.upper_bound.value:g}')
  return f'{name} = {value:.4f}: required {" and ".join(rule)}'


def validation_failures(evaluation_uri: str) -> List[str]:
  """One line per failed blessing rule, with the metric, its value and the rule."""
  validation = tfma.load_validation_result(evaluation_uri)
  lines = []
  for per_slice in validation.metric_validations_per_slice:
    for failure in per_slice.failures:
      lines.append(_failure_line(failure))
  if validation.missing_thresholds:
    lines.append('not validated: a configured threshold had no metric to check')
  for spec in validation.missing_slices:
    lines.append(f'not validated: slice {spec} was missing from the eval data')
  return lines


def latest_run(metadata_path: str, pipeline_name: str) -> RunSummary:
  """The summary of the most recent run of `pipeline_name` recorded in the SQLite store."""
  store = open_store(metadata_path)
  runs = [c for c in store.get_contexts_by_type('pipeline_run')
          if any(p.name == pipeline_name for p in store.get_parent_contexts_by_context(c.id))]
  if not runs:
    raise LookupError(f'no run of pipeline {pipeline_name!r} in {metadata_path}')
  run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
  summary = RunSummary(run.name, {}, {}, {}, None, [], False, None, False)
  for execution in sorted(store.get_executions_by_context(run.id), key=lambda e: e.id):
    node = node_id(store, execution)
    summary.component_states[node] = _state_name(execution)
    outputs = _outputs(store, execution)
    if node == 'Evaluator' and outputs.get('evaluation'):
      evaluation_uri = outputs['evaluation'][0].uri
      metrics = overall_metrics(evaluation_uri)
      summary.candidate_metrics = metrics.get('candidate', metrics.get('', {}))
      summary.baseline_metrics = metrics.get('baseline', {})
      summary.blessed = bool(_int_property(outputs['blessing'][0], 'blessed'))
      summary.failures = validation_failures(evaluation_uri)
    if node == 'Pusher' and outputs.get('pushed_model'):
      pushed = outputs['pushed_model'][0]
      summary.pushed = bool(_int_property(pushed, 'pushed'))
      summary.pushed_destination = _string_property(pushed, 'pushed_destination')
      summary.already_serving = bool(_int_property(pushed, dedup_pusher.ALREADY_SERVING_KEY))
  return summary


def format_summary(summary: RunSummary) -> str:
  lines = [f'Run {summary.run_id}', 'Components:']
  lines += [f'  {node:<32} {state}' for node, state in summary.component_states.items()]
  mean_iou = summary.candidate_metrics.get(iou_metric.MEAN_IOU)
  if mean_iou is not None:
    lines.append(f'Eval mean IoU: {mean_iou:.4f}')
    for name, value in sorted(summary.candidate_metrics.items()):
      if name.startswith('iou/'):
        lines.append(f'  {name[4:]:<20} IoU {value:.4f}')
  baseline = summary.baseline_metrics.get(iou_metric.MEAN_IOU)
  lines.append(f'Baseline mean IoU: {baseline:.4f}' if baseline is not None
               else 'Baseline: none (first blessed model)')
  if summary.blessed is not None:
    lines.append('Blessed: yes' if summary.blessed else 'Blessed: NO')
    lines += [f'  failed: {failure}' for failure in summary.failures]
  if summary.pushed:
    note = ' (this model was already serving there; no new version)' if summary.already_serving else ''
    lines.append(f'Pushed to: {summary.pushed_destination}{note}')
  else:
    lines.append('Pushed: no')
  return '\n'.join(lines)
