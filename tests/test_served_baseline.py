"""ServedModelBaseline: the served model as the Evaluator's baseline, without a Resolver.

Unit checks of the version choice, the driver's cache key and the Evaluator's empty-baseline guard,
then three LocalDagRunner runs with `baseline='serving_dir'` and no Resolver, one pipeline root:
  1. nothing served yet: an empty baseline artifact, which the Evaluator ignores; blessed on the
     absolute rule, pushed;
  2. a worse candidate (learning rate 1e-12, all but untrained; the config refuses 0): the served
     version is the baseline, the change rule refuses it, nothing new is served;
  3. the same again: the served version has not changed, so the component is cached.
"""

import os
import types

import pytest
from tfx import v1 as tfx
from tfx.components.evaluator import executor as evaluator_executor
from tfx.types import standard_artifacts

from components import served_baseline
from iouseg import run_summary
from pipeline import pipeline as pipeline_lib
from pipeline import settings
from trainer.config import TrainerConfig

from helpers import recorded_artifacts, run_tiny_pipeline

NAME = 'served'
TRAIN_STEPS = 60


def _fake_version(serving, name, saved_model=True):
  os.makedirs(os.path.join(serving, name))
  if saved_model:
    open(os.path.join(serving, name, 'saved_model.pb'), 'wb').close()


def test_newest_served_version_is_the_largest_loadable_number(tmp_path):
  serving = str(tmp_path / 'serving')
  assert served_baseline.newest_served_version(serving) is None
  assert served_baseline.served_state(serving) == ''
  _fake_version(serving, '900')
  _fake_version(serving, '1000')
  _fake_version(serving, '2000', saved_model=False)  # still being copied: TF Serving cannot load it
  _fake_version(serving, 'tmp-3000')
  assert served_baseline.newest_served_version(serving) == '1000'  # numerically, not as text
  assert served_baseline.served_state(serving) == '1000:no-fingerprint'


def test_driver_puts_the_served_version_into_the_cache_key(tmp_path):
  serving = str(tmp_path / 'serving')
  _fake_version(serving, '42')
  model = standard_artifacts.Model()
  model.uri = str(tmp_path / 'out')
  info = types.SimpleNamespace(
    exec_properties={'serving_model_dir': serving}, output_dict={'model': [model]}
  )
  output = served_baseline.ServedVersionDriver(None).run(info)
  assert output.exec_properties['served_version'].string_value == '42:no-fingerprint'
  assert output.exec_properties['serving_model_dir'].string_value == serving
  assert [a.uri for a in output.output_artifacts['model'].artifacts] == [model.uri]


def test_executor_copies_the_served_version_or_leaves_the_artifact_empty(tmp_path):
  serving = str(tmp_path / 'serving')
  model = standard_artifacts.Model()
  model.uri = str(tmp_path / 'out')
  outputs = {'model': [model]}
  served_baseline.Executor().Do({}, outputs, {'serving_model_dir': serving})
  assert outputs == {'model': [model]} and not os.path.exists(model.uri)
  assert model.get_string_custom_property('served_version') == ''
  assert not served_baseline.holds_saved_model(model)
  _fake_version(serving, '7')
  outputs = {'model': [model]}
  served_baseline.Executor().Do({}, outputs, {'serving_model_dir': serving})
  assert outputs['model'] == [model]
  assert os.path.exists(os.path.join(model.uri, 'Format-Serving', 'saved_model.pb'))
  assert served_baseline.holds_saved_model(model)
  assert model.get_string_custom_property('served_version') == '7'
  assert model.get_string_custom_property('served_path') == os.path.join(serving, '7')


def test_evaluator_treats_a_baseline_without_a_saved_model_as_none(tmp_path, monkeypatch):
  """What every runner hands the Evaluator when nothing was served: the artifact, empty."""
  seen = []
  monkeypatch.setattr(
    evaluator_executor.Executor, 'Do', lambda self, inputs, outputs, props: seen.append(inputs)
  )
  empty, real = standard_artifacts.Model(), standard_artifacts.Model()
  empty.uri, real.uri = str(tmp_path / 'empty'), str(tmp_path / 'real')
  os.makedirs(os.path.join(real.uri, 'Format-Serving'))
  open(os.path.join(real.uri, 'Format-Serving', 'saved_model.pb'), 'wb').close()
  executor = served_baseline.BaselineTolerantExecutor()
  executor.Do({'baseline_model': [empty], 'model': ['m']}, {}, {})
  executor.Do({'baseline_model': [real], 'model': ['m']}, {}, {})
  assert seen[0]['baseline_model'] == [] and seen[0]['model'] == ['m']
  assert seen[1]['baseline_model'] == [real]


def _pipeline(baseline=settings.Baseline.RESOLVER, warm_start=False):
  return pipeline_lib.create_pipeline(
    settings.PipelinePaths('p', '/r', '/d', '/s'),
    settings.DataSettings(),
    settings.TrainingSettings(
      TrainerConfig(),
      tfx.proto.TrainArgs(num_steps=10),
      tfx.proto.EvalArgs(num_steps=1),
      warm_start=warm_start,
    ),
    settings.BlessingSettings(0.5, baseline=baseline),
  )


def test_create_pipeline_baseline_choices():
  def ids(p):
    return {c.id for c in p.components}

  served = _pipeline(baseline='serving_dir')  # what compile-kubeflow builds by default
  assert pipeline_lib.SERVED_BASELINE_ID in ids(served) and pipeline_lib.RESOLVER_ID not in ids(
    served
  )
  evaluator = next(c for c in served.components if c.id == 'Evaluator')
  assert isinstance(evaluator, served_baseline.ServedBaselineEvaluator)
  assert evaluator.inputs['baseline_model'].producer_component_id == pipeline_lib.SERVED_BASELINE_ID
  baseline = next(c for c in served.components if c.id == pipeline_lib.SERVED_BASELINE_ID)
  assert baseline.exec_properties['serving_model_dir'] == '/s'
  resolver = _pipeline()
  assert pipeline_lib.RESOLVER_ID in ids(resolver)
  assert pipeline_lib.SERVED_BASELINE_ID not in ids(resolver)
  none = _pipeline(baseline='none')
  assert not {pipeline_lib.RESOLVER_ID, pipeline_lib.SERVED_BASELINE_ID} & ids(none)
  assert 'baseline_model' not in next(c for c in none.components if c.id == 'Evaluator').inputs
  assert pipeline_lib.SERVED_BASELINE_ID in ids(_pipeline(baseline='serving_dir'))
  # A warm start needs the Resolver (the model the Trainer starts from) whatever the baseline.
  warm = _pipeline(baseline='serving_dir', warm_start=True)
  assert {pipeline_lib.RESOLVER_ID, pipeline_lib.SERVED_BASELINE_ID} <= ids(warm)
  evaluator = next(c for c in warm.components if c.id == 'Evaluator')
  assert evaluator.inputs['baseline_model'].producer_component_id == pipeline_lib.SERVED_BASELINE_ID
  with pytest.raises(ValueError, match='one of'):
    _pipeline(baseline='latest')


@pytest.fixture(scope='module')
def runs(tiny_demo_data, tmp_path_factory):
  base = tmp_path_factory.mktemp('served')
  serving = str(base / 'serving')

  def run(**trainer_overrides):
    metadata = run_tiny_pipeline(
      base,
      tiny_demo_data,
      NAME,
      train_steps=TRAIN_STEPS,
      min_mean_iou=0.0,
      trainer_overrides=trainer_overrides,
      baseline='serving_dir',
    )
    versions = sorted(os.listdir(serving)) if os.path.isdir(serving) else []
    return (
      run_summary.latest_run(metadata, NAME),
      versions,
      recorded_artifacts(metadata, pipeline_lib.SERVED_BASELINE_ID),
      recorded_artifacts(metadata, 'Evaluator'),
    )

  return {
    'first': run(),
    'worse': run(learning_rate=1e-12),
    'again': run(learning_rate=1e-12),
    'serving': serving,
  }


@pytest.mark.e2e
def test_first_run_without_a_served_model_has_no_baseline(runs):
  summary, versions, (_, outputs, properties), (evaluator_inputs, _, _) = runs['first']
  assert pipeline_lib.RESOLVER_ID not in summary.component_states
  assert summary.component_states[pipeline_lib.SERVED_BASELINE_ID] == 'executed'
  assert properties['served_version'] == ''
  (empty,) = outputs['model']
  assert empty.get_string_custom_property('served_version') == ''
  assert not served_baseline.holds_saved_model(empty)
  assert [a.id for a in evaluator_inputs['baseline_model']] == [empty.id]
  # The Evaluator ran without it: no baseline metrics, no baseline on the blessing.
  _, evaluator_outputs, _ = runs['first'][3]
  assert not evaluator_outputs['blessing'][0].has_custom_property('baseline_model_id')
  assert summary.blessed and summary.pushed and not summary.baseline_metrics
  assert len(versions) == 1


@pytest.mark.e2e
def test_worse_candidate_is_refused_against_the_served_model(runs):
  first_versions = runs['first'][1]
  summary, versions, (_, outputs, properties), (evaluator_inputs, _, _) = runs['worse']
  assert summary.component_states['Trainer'] == 'executed'
  assert summary.component_states[pipeline_lib.SERVED_BASELINE_ID] == 'executed'
  (baseline,) = outputs['model']
  assert baseline.get_string_custom_property('served_version') == first_versions[0]
  assert baseline.get_string_custom_property('served_path') == os.path.join(
    runs['serving'], first_versions[0]
  )
  assert properties['served_version'].startswith(first_versions[0] + ':')
  assert [a.id for a in evaluator_inputs['baseline_model']] == [baseline.id]
  assert summary.candidate_metrics['mean_iou'] < summary.baseline_metrics['mean_iou']
  assert summary.baseline_metrics['mean_iou'] == pytest.approx(
    runs['first'][0].candidate_metrics['mean_iou']
  )
  assert summary.blessed is False and not summary.pushed
  assert any('baseline' in f for f in summary.failures), summary.failures
  assert versions == first_versions


@pytest.mark.e2e
def test_unchanged_served_version_keeps_the_cache(runs):
  summary, versions, _, _ = runs['again']
  assert summary.component_states[pipeline_lib.SERVED_BASELINE_ID] == 'cached'
  assert summary.component_states['Evaluator'] == 'cached'
  assert summary.blessed is False and versions == runs['first'][1]
