"""The optimisation half of the training recipe: learning-rate schedule, optimizer, best weights.

`--lr-schedule` runs over the run's total train steps: `poly` is DeepLab's and the TF Model Garden's
segmentation schedule, lr x (1 - t/T)^0.9; `cosine` is lr x (1 + cos(pi t/T)) / 2; both reach 0 at
the last step. `--warmup-steps` W ramps linearly from 0 to lr over the first W steps (the Model
Garden's linear warm-up) and the schedule then runs over the remaining T - W steps. `--weight-decay`
> 0 trains with AdamW (decoupled decay, scaled by the scheduled learning rate as tf_keras applies
it), leaving batch-norm and bias variables undecayed.

`BestWeights` keeps the weights of the epoch with the best validation mean IoU and puts them back
when training ends, so the exported model is the best epoch's, not the last one's.
"""

import logging
import math

import numpy as np
import tensorflow as tf
import tf_keras

from trainer import config as trainer_config

POLY_POWER = 0.9
# What `BestWeights` watches: the `val_` form of trainer.metrics.ThresholdedMeanIoU's name.
MONITOR = 'val_mean_iou'
# Variables AdamW leaves undecayed (substrings of their names: batch-norm gamma and beta, biases).
NOT_DECAYED = ('_bn', 'bias')


# Registered so that a SavedModel's optimizer config (and `tf_keras.models.load_model`) can name it.
@tf_keras.saving.register_keras_serializable(package='iouseg')
class WarmupDecay(tf_keras.optimizers.schedules.LearningRateSchedule):
  """Linear warm-up over `warmup_steps`, then `kind` (constant, poly, cosine) to `total_steps`."""

  def __init__(
    self,
    learning_rate: float,
    total_steps: int,
    warmup_steps: int = 0,
    kind: str = 'constant',
    power: float = POLY_POWER,
  ):
    super().__init__()
    if kind not in trainer_config.LR_SCHEDULES:
      raise ValueError(f'unknown schedule {kind!r}; choose one of {trainer_config.LR_SCHEDULES}')
    self.learning_rate, self.total_steps = learning_rate, total_steps
    self.warmup_steps = warmup_steps
    self.kind, self.power = kind, power

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    base = tf.constant(self.learning_rate, tf.float32)
    warmup = float(self.warmup_steps)
    decay_steps = float(max(self.total_steps - self.warmup_steps, 1))
    progress = tf.clip_by_value((step - warmup) / decay_steps, 0.0, 1.0)
    if self.kind == 'poly':
      rate = base * tf.pow(1.0 - progress, self.power)
    elif self.kind == 'cosine':
      rate = base * 0.5 * (1.0 + tf.cos(math.pi * progress))
    else:
      rate = base
    if self.warmup_steps > 0:
      rate = tf.where(step < warmup, base * step / warmup, rate)
    return rate

  def get_config(self):
    return {
      'learning_rate': self.learning_rate,
      'total_steps': self.total_steps,
      'warmup_steps': self.warmup_steps,
      'kind': self.kind,
      'power': self.power,
    }


def learning_rate(
  config: trainer_config.OptimizerConfig, total_steps: int | None
) -> float | WarmupDecay:
  """The configured rate: a float for a constant rate without warm-up (exactly Adam(lr)), else a
  schedule over `total_steps`. Without `total_steps` (timing benchmarks that only build the model)
  the rate is constant."""
  if total_steps is None or (config.lr_schedule == 'constant' and not config.warmup_steps):
    if total_steps is None and (config.lr_schedule != 'constant' or config.warmup_steps):
      logging.info(
        'No total train steps given: constant learning rate %g instead of %s',
        config.learning_rate,
        config.lr_schedule,
      )
    return config.learning_rate
  return WarmupDecay(config.learning_rate, total_steps, config.warmup_steps, config.lr_schedule)


def optimizer(
  config: trainer_config.OptimizerConfig, total_steps: int | None = None
) -> tf_keras.optimizers.Optimizer:
  """Adam, or AdamW when `weight_decay` > 0, on the configured learning rate."""
  rate = learning_rate(config, total_steps)
  if config.weight_decay > 0:
    adamw = tf_keras.optimizers.AdamW(rate, weight_decay=config.weight_decay)
    adamw.exclude_from_weight_decay(var_names=list(NOT_DECAYED))
    return adamw
  return tf_keras.optimizers.Adam(rate)


class BestWeights(tf_keras.callbacks.Callback):
  """Keeps the weights (batch-norm statistics included) of the epoch with the highest `monitor`
  and restores them at the end of training; the first of equal epochs wins. Epochs without the
  value (no validation) are skipped; with none at all the last weights stay."""

  def __init__(self, monitor: str = MONITOR):
    super().__init__()
    self.monitor = monitor
    self.best, self.best_epoch, self.best_weights, self.last_epoch = -np.inf, None, None, None

  def on_train_begin(self, logs=None):
    self.best, self.best_epoch, self.best_weights, self.last_epoch = -np.inf, None, None, None

  def on_epoch_end(self, epoch, logs=None):
    self.last_epoch = epoch
    value = (logs or {}).get(self.monitor)
    if value is not None and float(value) > self.best:
      self.best, self.best_epoch = float(value), epoch
      self.best_weights = self.model.get_weights()

  def on_train_end(self, logs=None):
    if self.best_weights is None:
      logging.warning('BestWeights: no %s was logged; keeping the last weights', self.monitor)
      return
    if self.best_epoch != self.last_epoch:
      self.model.set_weights(self.best_weights)
    logging.info(
      'Keeping the weights of epoch %d (%s %.4f)', self.best_epoch + 1, self.monitor, self.best
    )
