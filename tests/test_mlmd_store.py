"""iouseg.mlmd_store reads the artifacts of an execution by key, as TFX's own publisher wrote them."""

from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata as tfx_metadata
from tfx.orchestration.portable.mlmd import execution_lib
from tfx.types import standard_artifacts

from iouseg import mlmd_store


def test_an_artifact_under_two_keys_is_found_under_both(tmp_path):
  """An Evaluator whose baseline is its own candidate model takes one artifact as `model` and as
  `baseline_model`: the summary must find it under each key."""
  path = str(tmp_path / 'metadata.sqlite')
  with tfx_metadata.Metadata(tfx_metadata.sqlite_metadata_connection_config(path)) as handle:
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / 'model')
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / 'examples')
    handle.publish_artifacts([model, examples])  # registered, as the upstream components did
    execution = execution_lib.prepare_execution(
      handle, metadata_store_pb2.ExecutionType(name='Evaluator'), metadata_store_pb2.Execution.NEW
    )
    execution = execution_lib.put_execution(
      handle,
      execution,
      contexts=[],
      input_artifacts={'model': [model], 'baseline_model': [model], 'examples': [examples]},
    )
  store = mlmd_store.open_store(path)
  found = mlmd_store.artifacts(store, execution, mlmd_store.INPUT_EVENTS)
  assert {key: [a.uri for a in artifacts] for key, artifacts in found.items()} == {
    'model': [model.uri],
    'baseline_model': [model.uri],
    'examples': [examples.uri],
  }
