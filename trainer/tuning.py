"""The Tuner's `tuner_fn` (referenced by import path `trainer.tuning.tuner_fn`) and how the Trainer
applies its result.

TFX's Tuner component calls `tuner_fn(fn_args)`, runs the returned KerasTuner search
(`tuner.search(**fit_kwargs)`) and writes the best trial's `HyperParameters.get_config()` as its
`best_hyperparameters` artifact; the Trainer receives that JSON as `fn_args.hyperparameters`, and
`run_fn` replaces the matching `TrainerConfig` settings with the values in it
(`trainer.task.apply_hyperparameters`: there, since this module imports `trainer.task`) and records
them in the SavedModel's `assets.extra/tuned_hyperparameters.json`.
Each hyperparameter is named after the flat name of the TrainerConfig setting it sets
(`TrainerConfig.replace` routes it to its group), so nothing maps names.

The search (RandomSearch, seeded by `runtime.seed`), on the validation mean IoU of each trial
(`val_mean_iou`, the Trainer's own metric on the eval split, higher is better; a trial scores its best
epoch, the epoch the Trainer exports):
  learning_rate         log-uniform in [1e-4, 1e-2]
  loss                  soft_iou, soft_iou_per_class, lovasz, cross_entropy+soft_iou,
                        cross_entropy+soft_iou_per_class (the default)
  cross_entropy_weight  log-uniform in [0.1, 2], only when the loss has a cross-entropy term
  base_filters          half, the same and twice the configured width (at least 4); not searched
                        when the Trainer warm-starts (its architecture is the base model's)
Each hyperparameter's default is the configured value (KerasTuner 1.3.5's RandomSearch samples
every trial at random, the first included, so the configuration as given is not itself a trial
unless drawn). Every trial builds, compiles and feeds the model
exactly as the Trainer does (`trainer.task.compiled_model`, `trainer.data.make_dataset` with the
Trainer's augmentation), on the Tuner's train steps, spread over the configured epochs.

KerasTuner must build on tf_keras: keras-tuner 1.3.5 (pinned in requirements.in) imports
`tensorflow.keras`, which is tf_keras under TF_USE_LEGACY_KERAS=1; later versions import Keras 3 and
reject tf_keras models (keras-team/keras-tuner#1039). See docs/tuning.md.
"""

import keras_tuner
import tensorflow_transform as tft
import tf_keras
from tfx import v1 as tfx

from trainer import config as trainer_config
from trainer import data, distribution, task

OBJECTIVE = 'val_mean_iou'
# Tuner custom_config keys (pipeline.create_pipeline writes them).
TRAINER_CONFIG_KEY = 'trainer_config'
MAX_TRIALS_KEY = 'max_trials'
SEARCH_WIDTH_KEY = 'search_base_filters'

LEARNING_RATE_RANGE = (1e-4, 1e-2)
LOSSES = (
  'soft_iou',
  'soft_iou_per_class',
  'lovasz',
  'cross_entropy+soft_iou',
  'cross_entropy+soft_iou_per_class',
)
# The losses with a cross-entropy term, whose weight is searched too.
WEIGHTED_LOSSES = ('cross_entropy+soft_iou', 'cross_entropy+soft_iou_per_class')
CROSS_ENTROPY_WEIGHT_RANGE = (0.1, 2.0)
MIN_BASE_FILTERS = 4


def _clip(value: float, bounds) -> float:
  return min(max(value, bounds[0]), bounds[1])


def width_choices(base_filters: int) -> list:
  return sorted({max(MIN_BASE_FILTERS, base_filters // 2), base_filters, base_filters * 2})


def search_space(
  config: trainer_config.TrainerConfig, hp: keras_tuner.HyperParameters, search_width: bool = True
) -> trainer_config.TrainerConfig:
  """`config` with the searched fields drawn from `hp` (registering them on first use, with the
  configured values as their defaults)."""
  losses = config.losses
  values = {
    'learning_rate': hp.Float(
      'learning_rate',
      *LEARNING_RATE_RANGE,
      sampling='log',
      default=_clip(config.optimizer.learning_rate, LEARNING_RATE_RANGE),
    ),
    'loss': hp.Choice(
      'loss', list(LOSSES), default=losses.loss if losses.loss in LOSSES else LOSSES[0]
    ),
  }
  with hp.conditional_scope('loss', list(WEIGHTED_LOSSES)):
    weight = hp.Float(
      'cross_entropy_weight',
      *CROSS_ENTROPY_WEIGHT_RANGE,
      sampling='log',
      default=_clip(losses.cross_entropy_weight, CROSS_ENTROPY_WEIGHT_RANGE),
    )
  if values['loss'] in WEIGHTED_LOSSES:
    values['cross_entropy_weight'] = weight
  if search_width:
    base_filters = config.model.base_filters
    values['base_filters'] = hp.Choice(
      'base_filters', width_choices(base_filters), default=base_filters
    )
  return config.replace(**values)


class SegmentationHyperModel(keras_tuner.HyperModel):
  """Builds the Trainer's compiled FCN from the configured TrainerConfig and the trial's values."""

  def __init__(self, config: trainer_config.TrainerConfig, total_steps: int, search_width: bool):
    super().__init__(name='iouseg_fcn')
    self._config, self._total_steps, self._search_width = config, total_steps, search_width

  def build(self, hp):
    config = search_space(self._config, hp, self._search_width)
    return task.compiled_model(config, total_steps=self._total_steps)


def tuner_fn(fn_args: tfx.components.FnArgs) -> tfx.components.TunerFnResult:
  custom = fn_args.custom_config or {}
  config = trainer_config.TrainerConfig.from_dict(custom.get(TRAINER_CONFIG_KEY, {}))
  search_width = bool(custom.get(SEARCH_WIDTH_KEY, True))
  tf_keras.utils.set_random_seed(config.runtime.seed)
  distribution.configure_precision(config.runtime.mixed_precision)
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
  # The Trainer's lateral-class check, before any trial trains on mirrored classes.
  task.check_lateral_classes(config, task.label_positions(fn_args.train_files, tf_transform_output))
  train, evaluation = data.train_and_eval(
    fn_args.train_files, fn_args.eval_files, tf_transform_output, config
  )
  epochs = max(1, min(config.runtime.epochs, fn_args.train_steps))
  steps_per_epoch = max(1, fn_args.train_steps // epochs)
  # One machine: its GPUs (a Tuner task has no TF_CONFIG cluster of its own).
  tuner = keras_tuner.RandomSearch(
    SegmentationHyperModel(config, epochs * steps_per_epoch, search_width),
    objective=keras_tuner.Objective(OBJECTIVE, direction='max'),
    max_trials=int(custom.get(MAX_TRIALS_KEY, 10)),
    seed=config.runtime.seed,
    distribution_strategy=distribution.get_strategy('mirrored'),
    directory=fn_args.working_dir,
    project_name='iouseg',
    overwrite=True,
  )
  return tfx.components.TunerFnResult(
    tuner=tuner,
    fit_kwargs=dict(
      x=train,
      validation_data=evaluation,
      epochs=epochs,
      steps_per_epoch=steps_per_epoch,
      validation_steps=max(1, fn_args.eval_steps),
      verbose=2,
    ),
  )
