"""The pipeline's Beam components give the same results on every local Beam runner.

One in-memory pipeline run on a tiny set; then StatisticsGen, Transform and the Evaluator are run
again, each through its own TFX executor with the inputs and settings recorded in ML Metadata, on
DirectRunner multi-processing (2 workers) and on the portable runner with an embedded job server.
"""

import glob
import os

import numpy as np
import pytest
import tensorflow_transform as tft
from ml_metadata.proto import metadata_store_pb2
from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx.components.evaluator import executor as evaluator_executor
from tfx.components.statistics_gen import executor as statistics_executor
from tfx.components.transform import executor as transform_executor
from tfx.types import artifact_utils

from iouseg import mlmd_store, run_summary
from pipeline import beam_runners
from trainer import data
from transform import features

from helpers import recorded_artifacts, rerun_executor, run_tiny_pipeline

EXECUTORS = {
  'StatisticsGen': statistics_executor.Executor,
  'Transform': transform_executor.Executor,
  'Evaluator': evaluator_executor.Executor,
}
OTHER_RUNNERS = ('multi_processing', 'portable')

pytestmark = pytest.mark.e2e


@pytest.fixture(scope='module')
def in_memory_run(tiny_demo_data, tmp_path_factory):
  base = tmp_path_factory.mktemp('beam')
  return run_tiny_pipeline(
    base,
    tiny_demo_data,
    'beam',
    train_steps=5,
    trainer_overrides={'epochs': 1},
    beam_pipeline_args=beam_runners.beam_args('in_memory'),
  )


def _statistics(statistics_artifact, split):
  stats = statistics_pb2.DatasetFeatureStatisticsList()
  (path,) = glob.glob(os.path.join(statistics_artifact.uri, f'Split-{split}', 'FeatureStats.pb'))
  stats.ParseFromString(open(path, 'rb').read())
  (dataset,) = stats.datasets
  return {f.path.step[0]: f for f in dataset.features}, dataset.num_examples


def _transformed(transform_graph_artifact, raw_examples_artifact, split):
  """The split's raw records through a transform graph, as the Trainer maps them."""
  tf_transform_output = tft.TFTransformOutput(transform_graph_artifact.uri)
  pattern = os.path.join(artifact_utils.get_split_uri([raw_examples_artifact], split), '*')
  dataset = data.make_dataset(pattern, tf_transform_output, batch_size=8, seed=0, shuffle=False)
  return [
    {features.IMAGE: image.numpy(), features.LABEL: label.numpy(), features.WEIGHT: weight.numpy()}
    for image, label, weight in dataset.take(1)
  ]


def _metrics(evaluation_artifact):
  return run_summary.sliced_metrics(evaluation_artifact.uri)[run_summary.OVERALL][
    run_summary.CANDIDATE
  ]


def rerun(metadata: str, node: str, beam_args, out_dir: str) -> dict:
  return rerun_executor(metadata, node, EXECUTORS[node], beam_args, out_dir)


@pytest.mark.parametrize('runner', OTHER_RUNNERS)
def test_same_results_on_every_local_runner(in_memory_run, runner, tmp_path):
  # As a local run passes them (`pipeline.local_runner`): with the setup file on the DirectRunner.
  args = beam_runners.with_local_dependencies(beam_runners.beam_args(runner, workers=2))
  store = mlmd_store.open_store(in_memory_run)
  original = {
    node: mlmd_store.tfx_artifacts(store, e, (metadata_store_pb2.Event.OUTPUT,))
    for e in store.get_executions()
    for node in [mlmd_store.node_id(store, e)]
    if node in EXECUTORS
  }

  statistics = rerun(in_memory_run, 'StatisticsGen', args, str(tmp_path))['statistics'][0]
  for split in ('train', 'eval'):
    again, count = _statistics(statistics, split)
    before, expected_count = _statistics(original['StatisticsGen']['statistics'][0], split)
    assert count == expected_count > 0
    assert set(again) == set(before)
    for name, feature in before.items():
      kind = feature.WhichOneof('stats')
      assert again[name].WhichOneof('stats') == kind, name
      assert (
        getattr(again[name], kind).common_stats.num_non_missing
        == getattr(feature, kind).common_stats.num_non_missing
      ), name
      if kind == 'num_stats':
        assert again[name].num_stats.mean == pytest.approx(feature.num_stats.mean), name
        assert again[name].num_stats.max == feature.num_stats.max, name

  # Transform's analyzers (the normalisation's full pass) again, judged by the graph they export.
  graph = rerun(in_memory_run, 'Transform', args, str(tmp_path))['transform_graph'][0]
  raw_examples = recorded_artifacts(in_memory_run, 'Transform')[0]['examples'][0]
  for split in ('train', 'eval'):
    (again,) = _transformed(graph, raw_examples, split)
    (before,) = _transformed(original['Transform']['transform_graph'][0], raw_examples, split)
    # Same one-hot labels and weights exactly; images equal up to the order of the float sums
    # in the normalisation's mean and variance.
    np.testing.assert_array_equal(again[features.LABEL], before[features.LABEL])
    np.testing.assert_array_equal(again[features.WEIGHT], before[features.WEIGHT])
    np.testing.assert_allclose(again[features.IMAGE], before[features.IMAGE], atol=1e-5)

  evaluation = rerun(in_memory_run, 'Evaluator', args, str(tmp_path))['evaluation'][0]
  again, before = _metrics(evaluation), _metrics(original['Evaluator']['evaluation'][0])
  assert set(again) == set(before) and 'mean_iou' in before
  for name, value in before.items():
    # Sums of integer confusion matrices: the same numbers however Beam split the data.
    np.testing.assert_allclose(again[name], value, atol=1e-9, err_msg=name)
