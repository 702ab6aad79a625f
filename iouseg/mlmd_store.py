"""Reading a pipeline's ML Metadata (SQLite, or a MySQL server: `pipeline.metadata`): its runs,
their executions and the artifacts they wrote.

The primitives `iouseg.run_summary` builds its summary from, and what tools that read a run directly
(benchmarks, tests) need: each component's time span and output artifacts in the latest run.
"""

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline import metadata

OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
INPUT_EVENTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)


def open_store(metadata_path: str) -> metadata_store.MetadataStore:
  """The store of --metadata: an SQLite file (read-only), or a server URL."""
  return metadata_store.MetadataStore(metadata.connection_config(metadata_path, readonly=True))


def node_id(store, execution) -> str:
  for context in store.get_contexts_by_execution(execution.id):
    if store.get_context_types_by_id([context.type_id])[0].name == 'node':
      return context.name.split('.', 1)[-1]
  return execution.type


def artifacts(store, execution, event_types) -> dict[str, list]:
  """Input or output artifacts (MLMD protos) of `execution` by key ('model', 'evaluation', ...)."""
  events = [e for e in store.get_events_by_execution_ids([execution.id]) if e.type in event_types]
  by_id = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
  by_key = {}
  for event in events:
    # TFX writes one (key, index) step pair per key an artifact is under: an Evaluator's model that
    # is also its baseline has one event with the steps model, 0, baseline_model, 0.
    keys = [step.key for step in event.path.steps if step.HasField('key')] or ['']
    for key in keys:
      by_key.setdefault(key, []).append(by_id[event.artifact_id])
  return by_key


def tfx_artifacts(store, execution, event_types) -> dict[str, list]:
  """`artifacts` as TFX `Artifact` objects, what executors take and return."""
  from tfx.types import artifact_utils

  return {
    key: [
      artifact_utils.deserialize_artifact(store.get_artifact_types_by_id([a.type_id])[0], a)
      for a in found
    ]
    for key, found in artifacts(store, execution, event_types).items()
  }


def latest_run_context(store, metadata_path: str, pipeline_name: str):
  """The `pipeline_run` context of the most recent run of `pipeline_name`."""
  runs = [
    c
    for c in store.get_contexts_by_type('pipeline_run')
    if any(p.name == pipeline_name for p in store.get_parent_contexts_by_context(c.id))
  ]
  if not runs:
    raise LookupError(f'no run of pipeline {pipeline_name!r} in {metadata_path}')
  return max(runs, key=lambda c: (c.create_time_since_epoch, c.id))


def component_spans(metadata_path: str, pipeline_name: str) -> dict[str, tuple]:
  """{node id: (start, end) in seconds since the epoch} of each execution of the latest run: from its
  creation in MLMD to its last update (the launcher's record of the component finishing)."""
  store = open_store(metadata_path)
  run = latest_run_context(store, metadata_path, pipeline_name)
  return {
    node_id(store, e): (e.create_time_since_epoch / 1e3, e.last_update_time_since_epoch / 1e3)
    for e in sorted(store.get_executions_by_context(run.id), key=lambda e: e.id)
  }


def latest_outputs(metadata_path: str, pipeline_name: str, node: str) -> dict[str, list]:
  """The output artifacts (TFX `Artifact`s, by key) of `node` in the latest run of the pipeline, for
  tools that read a component's outputs directly (the benchmarks)."""
  store = open_store(metadata_path)
  run = latest_run_context(store, metadata_path, pipeline_name)
  for execution in store.get_executions_by_context(run.id):
    if node_id(store, execution) == node:
      return tfx_artifacts(store, execution, OUTPUT_EVENTS)
  raise LookupError(f'no {node} execution in run {run.name} of {metadata_path}')
