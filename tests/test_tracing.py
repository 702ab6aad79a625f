"""AutoGraph leaves tf_keras's own code alone once the Trainer compiles its model (as TensorFlow
does for `keras`), and still converts our functions: in a real training step of the compiled model
on augmented batches, the project's loss, metric and augmentation are what AutoGraph converts, so
their Python control flow keeps working inside a traced step.

Which functions AutoGraph converts is read from its own transpiler, whose `transform` it calls for
every function it converts (whether it converted that function before or not)."""

import inspect

import numpy as np
import tensorflow as tf
import tf_keras
from tensorflow.python.autograph.impl import api as autograph_api
from tensorflow.python.autograph.impl import conversion

from trainer import augment, losses, metrics, task
from trainer.config import TrainerConfig


def test_compiled_model_stops_autograph_rewriting_tf_keras():
  task.compiled_model(TrainerConfig.from_flat(num_classes=2, image_size=16, channels=1, depth=1))
  assert conversion.is_allowlisted(tf_keras.layers.Conv2D.call)
  assert conversion.is_allowlisted(tf_keras.Model.train_step)
  assert not conversion.is_allowlisted(augment.augment_batch)


def _converted_during(monkeypatch, run) -> list:
  """(module name, qualified name, whether a tf.function asked for it) of each function AutoGraph
  converts while `run()` runs."""
  converted = []
  transform = autograph_api._TRANSPILER.transform

  def recording(entity, program_ctx):
    function = getattr(entity, '__func__', entity)
    module = inspect.getmodule(function)
    converted.append(
      (
        module.__name__ if module else '',
        getattr(function, '__qualname__', ''),
        program_ctx.options.user_requested,
      )
    )
    return transform(entity, program_ctx)

  monkeypatch.setattr(autograph_api._TRANSPILER, 'transform', recording)
  run()
  return converted


def test_a_training_step_converts_our_loss_metric_and_augmentation_and_no_tf_keras_code(
  monkeypatch,
):
  config = TrainerConfig.from_flat(
    num_classes=3, image_size=16, channels=3, base_filters=4, depth=1, batch_size=2
  )
  options = augment.AugmentOptions.from_config(config)
  assert options is not None  # the default recipe augments
  rng = np.random.default_rng(0)
  batch = (
    rng.normal(size=(2, 16, 16, 3)).astype(np.float32),
    np.eye(3, dtype=np.float32)[rng.integers(0, 3, size=(2, 16, 16))],
    np.ones((2, 16, 16), np.float32),
  )
  network = task.compiled_model(config, total_steps=1)
  history = {}

  def train_one_step():
    dataset = augment.augment_dataset(tf.data.Dataset.from_tensors(batch).repeat(), options, 0)
    history.update(network.fit(dataset, steps_per_epoch=1, epochs=1, verbose=0).history)

  converted = _converted_during(monkeypatch, train_one_step)
  assert np.isfinite(history['loss'][0])
  names = {(module, name) for module, name, _ in converted}
  loss = losses.LOSSES[config.losses.loss]
  assert {
    (loss.__module__, loss.__qualname__),
    (metrics.__name__, 'ThresholdedMeanIoU.update_state'),
    (augment.__name__, 'augment_batch'),
  } <= names, sorted(names)
  # tf_keras's only function AutoGraph is handed is the step `tf.function` itself asks for, and
  # nothing that one calls.
  from_tf_keras = [
    (name, asked) for module, name, asked in converted if module.split('.')[0] == 'tf_keras'
  ]
  assert from_tf_keras and all(asked for _, asked in from_tf_keras), from_tf_keras
