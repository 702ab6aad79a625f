"""The Tuner (`OptionalComponents(tune_trials=N)`, `iouseg run --tune-trials N`): a real KerasTuner
search through LocalDagRunner (2 trials of a few steps on the tiny model), its best values
reaching the Trainer through the `hyperparameters` channel, recorded with the model and printed
in the summary."""

import json
import os

import keras_tuner
import pytest
import tf_keras

from iouseg import run_summary
from trainer import task, tuning
from trainer.config import TrainerConfig

from helpers import TINY_MODEL, recorded_artifacts, run_tiny_pipeline

NAME = 'tuner'
TRIALS = 2


@pytest.fixture(scope='module')
def run(tiny_demo_data, tmp_path_factory):
  base = tmp_path_factory.mktemp('tuner')
  metadata = run_tiny_pipeline(
    base, tiny_demo_data, NAME, train_steps=8, tune_trials=TRIALS, tune_steps=4
  )
  return base, metadata


def _json(uri: str, name: str):
  with open(os.path.join(uri, name)) as f:
    return json.load(f)


@pytest.mark.e2e
def test_search_runs_and_the_trainer_trains_with_the_best_values(run):
  _, metadata = run
  _, tuner_outputs, _ = recorded_artifacts(metadata, 'Tuner')
  best = _json(tuner_outputs['best_hyperparameters'][0].uri, 'best_hyperparameters.txt')['values']
  trials = _json(tuner_outputs['tuner_results'][0].uri, 'tuner_results.json')
  assert len(trials) == TRIALS
  assert all(0 <= trial['score'] <= 1 for trial in trials)  # val_mean_iou
  assert trials[0]['score'] == max(trial['score'] for trial in trials)  # objective: max
  assert {'learning_rate', 'loss', 'base_filters'} <= set(best)
  assert best['loss'] in tuning.LOSSES
  assert best['base_filters'] in tuning.width_choices(TINY_MODEL['base_filters'])
  assert ('cross_entropy_weight' in best) == (best['loss'] in tuning.WEIGHTED_LOSSES)

  trainer_inputs, trainer_outputs, _ = recorded_artifacts(metadata, 'Trainer')
  assert trainer_inputs['hyperparameters'][0].uri == tuner_outputs['best_hyperparameters'][0].uri
  model_dir = os.path.join(trainer_outputs['model'][0].uri, 'Format-Serving')
  recorded = _json(os.path.join(model_dir, 'assets.extra'), task.TUNED_FILE)
  assert recorded['hyperparameters'] == best
  trained_with = TrainerConfig.from_dict(recorded['trainer_config']).flat()
  for name, value in best.items():
    assert trained_with[name] == value
  # The exported network is the tuned one: its first convolution is base_filters wide.
  network = tf_keras.models.load_model(model_dir, compile=False)
  assert network.get_layer('enc0_conv1').filters == best['base_filters']


@pytest.mark.e2e
def test_summary_prints_the_best_values(run):
  _, metadata = run
  summary = run_summary.latest_run(metadata, NAME)
  assert summary.component_states['Tuner'] == 'executed'
  text = run_summary.format_summary(summary)
  (line,) = [line for line in text.splitlines() if line.startswith('Tuned')]
  assert line.startswith(f'Tuned (best of {TRIALS} trials, val_mean_iou ')
  for name, value in summary.tuned.items():
    assert (f'{name}={value:.4g}' if isinstance(value, float) else f'{name}={value}') in line


# --- the search space, without a pipeline -----------------------------------------------------------


def test_defaults_are_the_configuration_and_the_space_is_as_documented():
  config = TrainerConfig.from_flat(**TINY_MODEL, loss='lovasz', learning_rate=1e-3)
  hp = keras_tuner.HyperParameters()
  assert tuning.search_space(config, hp) == config  # defaults: the configured values
  space = {p.name: p for p in hp.space}
  assert set(space) == {'learning_rate', 'loss', 'cross_entropy_weight', 'base_filters'}
  assert (space['learning_rate'].min_value, space['learning_rate'].max_value) == (1e-4, 1e-2)
  assert space['learning_rate'].sampling == 'log'
  assert list(space['loss'].values) == list(tuning.LOSSES)
  assert list(space['base_filters'].values) == [4, 8, 16]
  assert not hp.is_active(space['cross_entropy_weight'])  # only with a cross-entropy term

  hp.values['loss'] = tuning.WEIGHTED_LOSSES[0]
  hp.values['cross_entropy_weight'] = 0.5
  tuned = tuning.search_space(config, hp)
  assert (tuned.losses.loss, tuned.losses.cross_entropy_weight) == (tuning.WEIGHTED_LOSSES[0], 0.5)
  # With a warm start the width is the base model's.
  narrow = keras_tuner.HyperParameters()
  tuning.search_space(config, narrow, search_width=False)
  assert 'base_filters' not in {p.name for p in narrow.space}


def test_apply_hyperparameters_sets_the_named_fields_only():
  config = TrainerConfig.from_flat(**TINY_MODEL)
  applied = task.apply_hyperparameters(
    config, {'learning_rate': 0.002, 'base_filters': 16, 'not_a_field': 1, 'to_dict': 2}
  )
  assert (applied.optimizer.learning_rate, applied.model.base_filters) == (0.002, 16)
  assert applied.losses.loss == config.losses.loss


def test_keras_tuner_builds_on_tf_keras():
  """keras-tuner 1.4.x builds on Keras 3 and rejects tf_keras models (keras-team/keras-tuner#1039);
  the pinned version type-checks against tf_keras, so the Trainer's model is a valid hypermodel."""
  model = tuning.SegmentationHyperModel(TrainerConfig.from_flat(**TINY_MODEL), 10, True).build(
    keras_tuner.HyperParameters()
  )
  assert isinstance(model, tf_keras.Model)
  from keras_tuner.engine import tuner as tuner_module

  assert isinstance(model, tuner_module.keras.models.Model)  # the class its check uses
