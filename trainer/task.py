"""The Trainer's `run_fn` (referenced by import path `trainer.task.run_fn`)."""

import json
import logging
import os
import time

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras
from tfx.components.trainer.fn_args_utils import FnArgs

from trainer import (
  augment,
  continuation,
  data,
  distribution,
  encoder_weights,
  encoders,
  export,
  fine_tuning,
  lateral,
  losses,
  metrics,
  schedules,
  tensorboard_images,
  tracing,
)
from trainer import config as trainer_config
from transform import features

# Batches read to estimate the class priors that initialise the head's bias.
_PRIOR_BATCHES = 8
# Tuned runs: the Tuner's values and the TrainerConfig, in the SavedModel's assets.extra/.
TUNED_FILE = 'tuned_hyperparameters.json'


class SegmentationLoss(tf_keras.losses.Loss):
  """Adapts a batch-level loss to Keras: the weights are applied inside the loss, not per sample.

  Keras's default path multiplies one loss per example by its weight; the soft IoU is a ratio of sums
  over the whole batch, so it takes the per-pixel weights itself. SUM_OVER_BATCH_SIZE makes Keras
  divide by the number of replicas, so that under a distribution strategy the summed gradients are
  those of the mean of the replicas' losses.
  """

  def __init__(self, name: str, cross_entropy_weight: float = 1.0, step=None, switch_step=None):
    super().__init__(reduction=tf_keras.losses.Reduction.SUM_OVER_BATCH_SIZE, name=name)
    self._fn = losses.get_loss(name, cross_entropy_weight, step, switch_step)

  def __call__(self, y_true, y_pred, sample_weight=None):
    fn = self._fn
    if not tf.executing_eagerly():
      # What Keras's own `Loss.__call__` (replaced here) does: AutoGraph converts the loss in a
      # traced step. Keras's code calling it is left unconverted (trainer/tracing.py), so nothing
      # else would.
      fn = tf.__internal__.autograph.tf_convert(fn, tf.__internal__.autograph.control_status_ctx())
    return fn(y_true, y_pred, sample_weight)

  def call(self, y_true, y_pred):
    return self._fn(y_true, y_pred)


def compiled_model(
  config: trainer_config.TrainerConfig, class_priors=None, total_steps=None
) -> tf_keras.Model:
  """The network (`encoders.build_network`), compiled with the configured loss, Adam (AdamW with
  weight decay; the encoder's rate scaled by `encoder_lr_multiplier`) and the thresholded mean IoU
  metric; the learning-rate schedule runs over `total_steps` (None: constant rate), and a
  'FIRST>SECOND' loss switches after `loss_switch` of them (it needs `total_steps`)."""
  tracing.skip_tf_keras_conversion()  # before the first traced step (trainer/tracing.py)
  data_settings, losses_settings = config.data, config.losses
  network = encoders.build_network(config, class_priors)
  optimizer = fine_tuning.scale_encoder_rate(
    schedules.optimizer(config.optimizer, total_steps),
    network,
    config.optimizer.encoder_lr_multiplier,
  )
  switch_step = None if total_steps is None else round(losses_settings.loss_switch * total_steps)
  network.compile(
    optimizer=optimizer,
    loss=SegmentationLoss(
      losses_settings.loss, losses_settings.cross_entropy_weight, optimizer.iterations, switch_step
    ),
    # Weighted: Keras hands it the dataset's pixel weights (0 on ignored pixels).
    weighted_metrics=[metrics.ThresholdedMeanIoU(data_settings.num_classes)],
    jit_compile=config.runtime.jit_compile,
  )
  return network


class LateralClassError(ValueError):
  """The augmentation would move a class with a side to the other side (`trainer.lateral`)."""


def label_positions(train_files, tf_transform_output) -> list | None:
  """Where each class lies in the train split (`lateral.ClassPosition`s), from the position sums
  Transform's analyzers computed (a constant of the transform graph, read off one record); None for
  a graph exported without them."""
  if features.LABEL_POSITIONS not in tf_transform_output.transformed_feature_spec():
    return None
  raw_spec = data.graph_input_spec(tf_transform_output)
  for serialized in data.raw_records(train_files).take(1).batch(1):
    transformed = tf_transform_output.transform_features_layer()(
      tf.io.parse_example(serialized, raw_spec)
    )
    return lateral.positions_from_stats(transformed[features.LABEL_POSITIONS][0].numpy())
  return None


def check_lateral_classes(config: trainer_config.TrainerConfig, positions) -> None:
  """LateralClassError, one line per augmentation with the fix, when a flip or a quarter turn would
  move a class that sits on one side of the train images to the other, unswapped."""
  if positions is None:
    logging.warning('The transform graph holds no label positions: no lateral-class check')
    return
  problems = lateral.guard_problems(
    positions, config.data.names, config.augmentation, config.flip_swap_pairs
  )
  if problems:
    raise LateralClassError(' | '.join(problems))


def write_augmentation_record(serving_model_dir: str, config: trainer_config.TrainerConfig):
  """assets.extra/augmentation.json beside the model: the augmentation that ran, in one line."""
  path = os.path.join(serving_model_dir, 'assets.extra', augment.RECORD_FILE)
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.gfile.GFile(path, 'w') as f:
    json.dump(
      {
        'augmentation': augment.describe(config),
        'flip_swap_pairs': [list(pair) for pair in config.flip_swap_pairs],
      },
      f,
      sort_keys=True,
    )


def train_and_export(fn_args: FnArgs, config: trainer_config.TrainerConfig) -> tf_keras.Model:
  """Trains on `fn_args.train_files`, validates on `fn_args.eval_files`, exports the SavedModel."""
  runtime = config.runtime
  tf_keras.utils.set_random_seed(runtime.seed)
  distribution.configure_precision(runtime.mixed_precision)
  strategy = distribution.get_strategy(runtime.distribution)
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
  # Before anything trains: a flip must not teach the model that left and right are one class.
  check_lateral_classes(config, label_positions(fn_args.train_files, tf_transform_output))
  logging.info('Augmentation: %s', augment.describe(config))

  train, evaluation = data.train_and_eval(
    fn_args.train_files, fn_args.eval_files, tf_transform_output, config
  )
  priors = None
  if config.model.head_init == 'prior':
    priors = data.class_priors(train, _PRIOR_BATCHES)
    logging.info('Class pixel priors from %d train batches: %s', _PRIOR_BATCHES, priors)

  epochs = max(1, min(runtime.epochs, fn_args.train_steps))
  steps_per_epoch = max(1, fn_args.train_steps // epochs)
  with strategy.scope():
    network = compiled_model(config, priors, total_steps=epochs * steps_per_epoch)
  # Refused in one line before any step when the file is missing, damaged or does not fit.
  weights_file = encoder_weights.initialise(network, config.model, config.data.channels)
  continuation.warm_start(network, fn_args.base_model)  # None: a cold start
  backup = continuation.backup_callback(fn_args, config, epochs)  # resumes a killed run

  network.fit(
    train,
    epochs=epochs,
    steps_per_epoch=steps_per_epoch,
    validation_data=evaluation,
    validation_steps=max(1, fn_args.eval_steps),
    callbacks=[
      tf_keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq='epoch'),
      tensorboard_images.PredictedMasks.from_dataset(
        evaluation, fn_args.model_run_dir, config.data.num_classes
      ),
    ]
    + ([] if runtime.keep_last_weights else [schedules.BestWeights()])
    + [backup]
    # After the backup's restore: it reads the step the run resumes at.
    + (
      [fine_tuning.EncoderFreeze(config.model.freeze_encoder_steps)]
      if config.model.freeze_encoder_steps
      else []
    ),
    verbose=2,
  )

  # Tracing the serving signatures is most of the export's time (tens of seconds on 2 cores for
  # the demo model) and prints nothing of its own: say when it starts and what it took.
  logging.info('Tracing the serving signatures for export')
  traced_from = time.perf_counter()
  signatures = export.add_signatures(
    network,
    tf_transform_output,
    resize=config.data.resize,
    inference_mode=config.model.inference,
    slide_overlap=config.model.slide_overlap,
  )
  logging.info('Traced %d signatures in %.1f s', len(signatures), time.perf_counter() - traced_from)
  network.save(fn_args.serving_model_dir, save_format='tf', signatures=signatures)
  write_augmentation_record(fn_args.serving_model_dir, config)
  encoder_weights.save(network, fn_args.serving_model_dir)  # for fine-tuning from this model
  encoder_weights.write_record(fn_args.serving_model_dir, weights_file)
  backup.clear()
  return network


def run_fn(fn_args: FnArgs) -> None:
  config = trainer_config.TrainerConfig.from_dict(fn_args.custom_config or {})
  tuned = (fn_args.hyperparameters or {}).get('values', {})  # the Tuner's best (trainer/tuning.py)
  config = apply_hyperparameters(config, tuned)
  train_and_export(fn_args, config)
  if tuned:  # recorded with the model; TF Serving ignores assets.extra/, the Pusher copies it
    path = os.path.join(fn_args.serving_model_dir, 'assets.extra', TUNED_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, 'w') as f:
      json.dump({'hyperparameters': tuned, 'trainer_config': config.to_dict()}, f, sort_keys=True)


def apply_hyperparameters(config: trainer_config.TrainerConfig, values: dict):
  """`config` with the settings that tuned `values` name (hyperparameters are named after their
  flat setting names); other values are left out."""
  logging.info('Tuned hyperparameters: %s', values)
  return config.replace(**{k: v for k, v in values.items() if k in trainer_config.GROUP_OF})
