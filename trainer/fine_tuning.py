"""Fine-tuning controls of an application encoder: `--freeze-encoder-steps` and
`--encoder-lr-multiplier`.

Freezing sets the nested encoder model's `trainable` to False, which in tf_keras also runs its batch
norms in inference mode (their moving statistics stay as loaded); `EncoderFreeze` thaws it after the
step count and has Keras trace the train step again, since a traced step keeps the variables it was
traced with. It reads the step from the optimizer's `iterations`, which `BackupAndRestore`
restores, so a resumed run freezes exactly as long as an unbroken one.

The multiplier scales the learning rate of the encoder's variables (Adam's step, and AdamW's decay
with it) inside the optimizer: scaling their gradients instead would change nothing, as Adam divides
a gradient by its own running magnitude.
"""

import logging

import tf_keras

from trainer import encoders


class EncoderFreeze(tf_keras.callbacks.Callback):
  """Keeps the encoder of an application network frozen for the first `steps` train steps."""

  def __init__(self, steps: int):
    super().__init__()
    self.steps = steps

  def _set(self, trainable: bool) -> None:
    encoder = encoders.encoder_of(self.model)
    if encoder.trainable != trainable:
      encoder.trainable = trainable
      self.model.train_function = self.model.make_train_function(force=True)
      logging.info('Encoder %s', 'trainable' if trainable else 'frozen')

  def _step(self) -> int:  # a MirroredVariable under the Trainer's strategy: no int() of its own
    return int(tf_keras.backend.get_value(self.model.optimizer.iterations))

  def on_train_begin(self, logs=None):  # after BackupAndRestore put back the step it resumes at
    self._set(self._step() >= self.steps)

  def on_train_batch_end(self, batch, logs=None):
    if self._step() == self.steps:
      self._set(True)
      print(f'Encoder trainable after {self.steps} frozen steps', flush=True)


class _EncoderRate:
  """Mixed into a tf_keras optimizer's class: the learning rate is multiplied by `_multiplier` while
  a variable of `_scaled` (optimizer variable keys) is updated or decayed. The optimizer reads
  `learning_rate` as the variable's step is traced, so the graph holds the scaled rate for them."""

  _multiplier, _scaled, _scaling = 1.0, frozenset(), False

  @property
  def learning_rate(self):
    rate = super().learning_rate
    return rate * self._multiplier if self._scaling else rate

  @learning_rate.setter
  def learning_rate(self, value):
    super(_EncoderRate, type(self)).learning_rate.fset(self, value)

  def _scaled_call(self, variable, call):
    self._scaling = self._var_key(variable) in self._scaled
    try:
      return call()
    finally:
      self._scaling = False

  def _update_step(self, gradient, variable):
    return self._scaled_call(
      variable, lambda: super(_EncoderRate, self)._update_step(gradient, variable)
    )

  def _apply_weight_decay(self, variables):
    for variable in variables:
      self._scaled_call(
        variable, lambda v=variable: super(_EncoderRate, self)._apply_weight_decay([v])
      )


_SCALED_CLASSES = {}


def scale_encoder_rate(
  optimizer: tf_keras.optimizers.Optimizer, network: tf_keras.Model, multiplier: float
) -> tf_keras.optimizers.Optimizer:
  """`optimizer`, built for every trainable variable of `network` (so the encoder's may join after a
  freeze), with the encoder's learning rate times `multiplier`."""
  optimizer.build(network.trainable_variables)
  encoder = encoders.encoder_of(network)
  if encoder is None or multiplier == 1:
    return optimizer
  base = type(optimizer)
  if base not in _SCALED_CLASSES:
    _SCALED_CLASSES[base] = type(f'{base.__name__}EncoderRate', (_EncoderRate, base), {})
  optimizer.__class__ = _SCALED_CLASSES[base]  # the same object: its state and Keras' references
  optimizer._multiplier = multiplier
  optimizer._scaled = frozenset(optimizer._var_key(v) for v in encoder.trainable_variables)
  return optimizer
