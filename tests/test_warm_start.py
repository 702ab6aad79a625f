"""Warm start (`TrainingSettings(warm_start=True)`, `iouseg run --warm-start`): the Trainer starts
from the weights of the latest blessed model, found by the baseline resolver, and fails naming the
setting when the architectures differ; the summary says what each run started from.

Four runs of one pipeline on the tiny demo data, in order:
  1. baseline: a cold start trained for several epochs, blessed;
  2. warm: one short epoch from the baseline's weights: its first validation IoU is the one of the
     baseline's weights it exported (its best epoch's: the Trainer keeps the best epoch's weights);
  3. cold: the same short epoch from scratch: its first validation IoU is far below;
  4. warm with another base_filters: the Trainer fails naming base_filters.
"""

import glob
import os

import pytest

from iouseg import run_summary

from helpers import TINY_CLASSES, TINY_MODEL, TINY_SIZE, run_tiny_pipeline

NAME = 'warm_start'
BASELINE_STEPS, BASELINE_EPOCHS = 120, 3
# The warm and cold runs: one epoch of two steps at a learning rate too small to move the weights,
# so their first validation is where training began (a fresh Adam's first steps at the default rate
# are about the rate per weight, and once moved the warm start 0.058 IoU below the baseline).
SHORT_STEPS, SHORT_RATE = 2, 1e-5
# How close the warm start's first-epoch validation mean IoU must be to the exported baseline's (its
# best epoch's), and how far below it a cold start's is.
CLOSE, FAR = 0.05, 0.15


def validation_mean_ious(model_run_uri: str) -> list:
  """The Trainer's validation mean IoU of each epoch, from its TensorBoard logs."""
  import tensorflow as tf

  values = {}
  for path in glob.glob(os.path.join(model_run_uri, 'validation', 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == 'epoch_mean_iou':
          values[event.step] = float(tf.make_ndarray(value.tensor))
  return [values[step] for step in sorted(values)]


@pytest.fixture(scope='module')
def runs(tiny_demo_data, tmp_path_factory):
  base = tmp_path_factory.mktemp('warm_start')

  def run(train_steps, epochs, learning_rate=None, **pipeline_args):
    overrides = {'epochs': epochs}
    if learning_rate:
      overrides['learning_rate'] = learning_rate
    metadata = run_tiny_pipeline(
      base,
      tiny_demo_data,
      NAME,
      train_steps=train_steps,
      trainer_overrides=overrides,
      **pipeline_args,
    )
    return run_summary.latest_run(metadata, NAME)

  results = {'baseline': run(BASELINE_STEPS, BASELINE_EPOCHS)}
  results['warm'] = run(SHORT_STEPS, 1, SHORT_RATE, warm_start=True)
  results['cold'] = run(SHORT_STEPS, 1, SHORT_RATE)
  with pytest.raises(Exception) as failure:  # LocalDagRunner re-raises the Trainer's error
    run_tiny_pipeline(
      base,
      tiny_demo_data,
      NAME,
      train_steps=SHORT_STEPS,
      warm_start=True,
      trainer_overrides={'epochs': 1, 'base_filters': TINY_MODEL['base_filters'] // 2},
    )
  results['mismatch'] = failure.value
  return results


@pytest.mark.e2e
def test_the_baseline_is_a_blessed_cold_start(runs):
  baseline = runs['baseline']
  assert baseline.blessed and baseline.started_from_id is None
  assert 'Started from: cold start' in run_summary.format_summary(baseline).splitlines()


@pytest.mark.e2e
def test_a_warm_start_begins_where_the_exported_baseline_was_and_a_cold_start_does_not(runs):
  baseline = validation_mean_ious(runs['baseline'].model_run_uri)
  warm = validation_mean_ious(runs['warm'].model_run_uri)
  cold = validation_mean_ious(runs['cold'].model_run_uri)
  assert len(baseline) == BASELINE_EPOCHS and len(warm) == len(cold) == 1
  # The baseline exported its best epoch's weights (schedules.BestWeights), not its last epoch's.
  exported = max(baseline)
  assert exported - baseline[0] > FAR, baseline  # the baseline learnt something
  assert abs(warm[0] - exported) < CLOSE, (warm, baseline)
  assert exported - cold[0] > FAR, (cold, baseline)


@pytest.mark.e2e
def test_the_summary_names_the_model_a_run_started_from(runs):
  baseline, warm, cold = runs['baseline'], runs['warm'], runs['cold']
  # The warm run's base model is the baseline's model: the one the Evaluator judged in run 1.
  assert warm.started_from_uri == baseline.model_uri
  assert warm.baseline_model_uri == baseline.model_uri
  lines = run_summary.format_summary(warm).splitlines()
  assert f'Started from: model {warm.started_from_id} ({baseline.model_uri})' in lines
  assert cold.started_from_id is None
  assert 'Started from: cold start' in run_summary.format_summary(cold).splitlines()


@pytest.mark.e2e
def test_another_architecture_fails_naming_the_setting(runs):
  message = str(runs['mismatch'])
  assert 'cannot warm-start from' in message
  half = TINY_MODEL['base_filters'] // 2
  assert f'base_filters {TINY_MODEL["base_filters"]} (this run: {half})' in message


def test_weight_shapes_are_compared_by_layer_name(tmp_path):
  """Without a pipeline: a saved model of 4 classes, a network of 2; and the same architecture at
  another image size, which a fully-convolutional network takes."""
  import numpy as np

  from trainer import continuation, model

  settings = dict(base_filters=4, depth=1)
  saved = model.build_fcn(TINY_SIZE, 3, TINY_CLASSES, **settings)
  saved.save(str(tmp_path / 'base'), save_format='tf')
  with pytest.raises(ValueError, match=r'num_classes 4 \(this run: 2\).*layer logits'):
    continuation.warm_start(model.build_fcn(TINY_SIZE, 3, 2, **settings), str(tmp_path / 'base'))
  larger = model.build_fcn(2 * TINY_SIZE, 3, TINY_CLASSES, **settings)
  assert continuation.warm_start(larger, str(tmp_path / 'base'))
  for ours, theirs in zip(larger.get_weights(), saved.get_weights()):
    np.testing.assert_array_equal(ours, theirs)
  assert continuation.warm_start(larger, None) is False


def test_the_run_flag_reaches_create_pipeline():
  from iouseg import cli
  from pipeline import flags

  parse = cli.build_parser().parse_args
  assert (
    flags.create_pipeline_kwargs(parse(['run', '--warm-start']), None)['training'].warm_start
    is True
  )
  assert flags.create_pipeline_kwargs(parse(['run']), None)['training'].warm_start is False
