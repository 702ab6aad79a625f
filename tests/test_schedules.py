"""trainer/schedules.py: learning-rate values at given steps, AdamW with weight decay, the best
epoch's weights restored, and the Trainer's use of all three. Tiny models in-process."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from trainer import metrics, schedules, task
from trainer.config import OptimizerConfig, TrainerConfig

from helpers import fit_arguments

TINY = dict(image_size=16, base_filters=4, depth=1, batch_size=4)


def _rate(schedule, step) -> float:
  return float(schedule(tf.constant(step)))


def test_poly_schedule_with_warmup():
  schedule = schedules.WarmupDecay(1.0, total_steps=110, warmup_steps=10, kind='poly')
  assert [_rate(schedule, s) for s in (0, 5, 10)] == pytest.approx([0.0, 0.5, 1.0])
  assert _rate(schedule, 60) == pytest.approx(0.5**0.9)  # half way through the 100 decay steps
  assert _rate(schedule, 110) == pytest.approx(0.0) and _rate(schedule, 500) == pytest.approx(0.0)


def test_cosine_and_constant_schedules():
  cosine = schedules.WarmupDecay(2.0, total_steps=100, kind='cosine')
  assert [_rate(cosine, s) for s in (0, 25, 50, 100)] == pytest.approx(
    [2.0, 1.0 + np.sqrt(0.5), 1.0, 0.0], abs=1e-6
  )
  constant = schedules.WarmupDecay(3e-3, total_steps=100, warmup_steps=4)
  assert [_rate(constant, s) for s in (1, 4, 99)] == pytest.approx([7.5e-4, 3e-3, 3e-3])


def test_the_config_picks_the_rate():
  assert schedules.learning_rate(OptimizerConfig(), 100) == 3e-3  # a plain float: exactly Adam(lr)
  poly = schedules.learning_rate(OptimizerConfig(lr_schedule='poly', warmup_steps=5), 100)
  assert (poly.kind, poly.total_steps, poly.warmup_steps) == ('poly', 100, 5)
  assert schedules.learning_rate(OptimizerConfig(lr_schedule='cosine'), None) == 3e-3
  with pytest.raises(ValueError):
    OptimizerConfig(lr_schedule='step')


def test_adamw_when_weight_decay_and_not_on_batch_norm_or_bias():
  assert type(schedules.optimizer(OptimizerConfig())) is tf_keras.optimizers.Adam
  network = task.compiled_model(
    TrainerConfig.from_flat(weight_decay=1e-4, lr_schedule='poly', **TINY), total_steps=50
  )
  optimizer = network.optimizer
  assert isinstance(optimizer, tf_keras.optimizers.AdamW) and optimizer.weight_decay == 1e-4
  assert optimizer._learning_rate.total_steps == 50
  decayed = {v.name: optimizer._use_weight_decay(v) for v in network.trainable_variables}
  assert decayed['enc0_conv1/kernel:0'] and decayed['logits/kernel:0']
  assert not decayed['enc0_bn1/gamma:0'] and not decayed['enc0_bn1/beta:0']
  assert not decayed['logits/bias:0']


def test_weight_decay_is_decoupled_and_scaled_by_the_learning_rate():
  """What docs/training.md says of tf_keras's AdamW: a zero gradient still shrinks a weight by
  lr x decay."""
  variable = tf.Variable([1.0, -2.0], name='w')
  optimizer = tf_keras.optimizers.AdamW(0.1, weight_decay=0.5)
  optimizer.apply_gradients([(tf.zeros(2), variable)])
  assert variable.numpy() == pytest.approx([1.0 - 0.05, -2.0 + 0.1])


class _ScriptedMetric(tf_keras.callbacks.Callback):
  """Replaces the logged val_mean_iou by a script (after checking the real one is logged) and keeps
  a copy of the weights at each epoch's end."""

  def __init__(self, values):
    super().__init__()
    self.values, self.weights = values, []

  def on_epoch_end(self, epoch, logs=None):
    assert schedules.MONITOR in logs
    logs[schedules.MONITOR] = self.values[epoch]
    self.weights.append(self.model.get_weights())


def _fit(values, callbacks):
  rng = np.random.default_rng(0)
  data = (
    rng.normal(size=(8, 16, 16, 3)).astype(np.float32),
    np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(8, 16, 16))],
    np.ones((8, 16, 16), np.float32),
  )
  dataset = tf.data.Dataset.from_tensor_slices(data).repeat().batch(4)
  tf_keras.utils.set_random_seed(0)
  # A one-layer head compiled as the Trainer compiles the FCN (loss, weighted metric): fast.
  inputs = tf_keras.Input((16, 16, 3))
  network = tf_keras.Model(inputs, tf_keras.layers.Conv2D(4, 1, activation='sigmoid')(inputs))
  network.compile(
    optimizer=schedules.optimizer(OptimizerConfig()),
    loss=task.SegmentationLoss('soft_iou'),
    weighted_metrics=[metrics.ThresholdedMeanIoU(4)],
  )
  script = _ScriptedMetric(values)
  network.fit(
    dataset,
    epochs=len(values),
    steps_per_epoch=2,
    validation_data=dataset,
    validation_steps=1,
    callbacks=[script] + callbacks,
    verbose=0,
  )
  return network, script.weights


def _same(first, second) -> bool:
  return all(np.array_equal(a, b) for a, b in zip(first, second))


def test_best_epoch_weights_are_restored_when_a_later_epoch_is_worse():
  network, weights = _fit([0.3, 0.8, 0.5], [schedules.BestWeights()])
  assert _same(network.get_weights(), weights[1]) and not _same(weights[1], weights[2])


def test_last_weights_stay_when_the_last_epoch_is_best_or_without_the_callback():
  network, weights = _fit([0.3, 0.5, 0.8], [schedules.BestWeights()])
  assert _same(network.get_weights(), weights[2])
  network, weights = _fit([0.3, 0.8, 0.5], [])
  assert _same(network.get_weights(), weights[2])


@pytest.mark.parametrize('keep_last', [False, True])
def test_trainer_schedules_over_its_steps_and_keeps_the_best_epoch(
  monkeypatch, tmp_path, keep_last
):
  def fake_make_dataset(*_, **__):
    data = (
      np.zeros((4, 16, 16, 3), np.float32),
      np.zeros((4, 16, 16, 4), np.float32),
      np.ones((4, 16, 16), np.float32),
    )
    return tf.data.Dataset.from_tensor_slices(data).repeat().batch(4)

  config = TrainerConfig.from_flat(
    lr_schedule='poly', warmup_steps=3, keep_last_weights=keep_last, **TINY
  )
  fitted = fit_arguments(monkeypatch, tmp_path, config, fake_make_dataset, ['t'], ['e'], 42)
  schedule = fitted['model'].optimizer._learning_rate
  # 42 steps over 4 epochs: 10 per epoch, so the schedule runs over the 40 steps taken.
  assert (fitted['epochs'], fitted['steps_per_epoch']) == (4, 10)
  assert (schedule.kind, schedule.total_steps, schedule.warmup_steps) == ('poly', 40, 3)
  best = [c for c in fitted['callbacks'] if isinstance(c, schedules.BestWeights)]
  assert len(best) == (0 if keep_last else 1)
