"""One study run on in-memory data, trained until validation mean IoU stops improving and scored as
the Evaluator scores; shared by the loss, recipe, lateral and transfer studies and the encoder
benchmark.

The data go through the Transform's own decode/normalise/one-hot functions (`trainer.in_memory`),
the nuclei tiles through `iouseg convert`, so no TFX run is needed per run. A run is the Trainer's
model and recipe (`trainer.task.compiled_model`, `trainer.augment`, `schedules.BestWeights`) with
one change: it stops once validation mean IoU (the Trainer's `val_mean_iou`, on the eval split at
model resolution) has not improved for `--patience` evaluations of `--eval-every` steps (Keras
`EarlyStopping`; for 'FIRST>SECOND' losses only counted from the switch), or at `--max-steps`; the
best evaluation's weights are kept. Scored at each image's native resolution (probabilities resized
back as the exported model does).
"""

import functools
import os
import pathlib
import tempfile
import time

import numpy as np
import tensorflow as tf
import tf_keras

from iouseg import converters, demo_data
from trainer import augment, decode, encoder_weights, export, in_memory, iou, schedules, task
from trainer.config import TrainerConfig
from transform import data_format
from transform.config import TransformConfig

import tf_env  # noqa: F401  (first: sets up TensorFlow)

SAMPLES = pathlib.Path(__file__).resolve().parents[1] / 'data' / 'samples'

CLASS_NAMES = {
  **{kind: names for kind, (_, names) in demo_data.KINDS.items()},
  'nuclei': ('background', 'nucleus'),
}
DATASETS = tuple(CLASS_NAMES)
# The sets added for issue 21 are written at the model size (--image-size): a 2-3 px band resized
# from the demo's 96 px would be thinner than that.
AT_MODEL_SIZE = ('lateral', 'thin')


def add_image_size_flag(parser) -> None:
  """--image-size, the model input size of the studies' runs."""
  parser.add_argument(
    '--image-size',
    type=int,
    default=64,
    help='model input size in pixels (nuclei tiles are 128) (default: %(default)s)',
  )


def prepare(dataset: str, workdir: str, image_size: int = 64):
  """(TransformConfig, train arrays, eval arrays) for a DATASETS name at `image_size`, and the eval
  records' file pattern."""
  root = os.path.join(workdir, dataset)
  if dataset in demo_data.KINDS:
    size = image_size if dataset in AT_MODEL_SIZE else 96
    demo_data.write_demo_data(root, size=size, kind=dataset)
    names = CLASS_NAMES[dataset]
    config = TransformConfig(
      image_size=image_size, channels=3, num_classes=len(names), class_names=','.join(names)
    )
  elif dataset == 'nuclei':
    converters.convert(SAMPLES / 'nuclei', root, num_classes=2, strict=True)
    # The 128x128 tiles at 64x64 by default: nuclei stay several pixels wide, and a step costs what
    # a demo step does.
    config = TransformConfig(image_size=image_size, channels=1, num_classes=2)
  else:
    raise ValueError(f'unknown dataset {dataset!r}')
  train, evaluation = in_memory.load_train_eval(f'{root}/train/*', f'{root}/eval/*', config)
  return (config, train, evaluation), f'{root}/eval/*'


def native_masks(file_pattern: str) -> list:
  """Each eval record's mask at its own size, decoded as the exported model decodes it."""
  spec = data_format.raw_feature_spec((data_format.MASK_ENCODED,))
  return [
    export.native_mask(
      tf.io.parse_single_example(serialized, spec)[data_format.MASK_ENCODED]
    ).numpy()
    for serialized in tf.data.TFRecordDataset(tf.io.gfile.glob(file_pattern))
  ]


def native_confusion(model, eval_images, masks, config: TransformConfig) -> np.ndarray:
  """The eval split's confusion matrix at native resolution: probabilities resized to each mask's
  size (`export.to_native_resolution`), decoded by the model's rule, ignore label left out."""
  probabilities = model.predict(eval_images, batch_size=16, verbose=0)
  matrix = np.zeros((config.num_classes, config.num_classes), np.int64)
  for probs, mask in zip(probabilities, masks):
    native = export.to_native_resolution(
      tf.constant(probs), mask.shape[0], mask.shape[1], config.image_size, config.resize
    ).numpy()
    matrix += iou.confusion_matrix(
      mask, decode.class_ids_np(native), mask != config.ignore_label, config.num_classes
    )
  return matrix


def train_batches(train, trainer_config: TrainerConfig, seed: int, batch_size: int):
  """The in-memory train arrays as the Trainer feeds them: shuffled by `seed`, repeated, batched,
  then augmented by the config's recipe (`trainer.augment`, as `trainer.data` applies it)."""
  return augment.augment_dataset(
    tf.data.Dataset.from_tensor_slices(train)
    .shuffle(len(train[0]), seed=seed)
    .repeat()
    .batch(batch_size),
    augment.AugmentOptions.from_config(trainer_config),
    seed,
  )


def train_to_convergence(trainer_config: TrainerConfig, seed: int, data, masks, args) -> dict:
  """One run of `trainer_config` (see the module docstring): native eval mean IoU, per-class IoU,
  un-augmented train mean IoU at model resolution, steps to the best evaluation, whether patience
  stopped it before --max-steps, seconds, and the validation mean IoU of every evaluation."""
  config, train, evaluation = data
  tf_keras.utils.set_random_seed(seed)
  evaluations = args.max_steps // args.eval_every
  model = task.compiled_model(trainer_config, total_steps=evaluations * args.eval_every)
  # The encoder from a weights file when the config names one (the transfer study), as the Trainer.
  encoder_weights.initialise(model, trainer_config.model, config.channels)
  dataset = train_batches(train, trainer_config, seed, args.batch_size)
  losses = trainer_config.losses
  switch = round(losses.loss_switch * evaluations) if '>' in losses.loss else 0
  stopping = tf_keras.callbacks.EarlyStopping(
    schedules.MONITOR, mode='max', patience=args.patience, start_from_epoch=switch
  )
  best = schedules.BestWeights()
  start = time.perf_counter()
  history = model.fit(
    dataset,
    steps_per_epoch=args.eval_every,
    epochs=evaluations,
    validation_data=evaluation,
    validation_batch_size=args.batch_size,
    callbacks=[best, stopping],
    verbose=0,
  )
  seconds = time.perf_counter() - start
  per_class = iou.per_class_iou(native_confusion(model, evaluation[0], masks, config))
  return {
    'seed': seed,
    'mean_iou': float(np.nanmean(per_class)),
    'per_class_iou': [float(v) for v in per_class],
    'train_mean_iou': model_resolution_mean_iou(model, train, config.num_classes),
    'best_step': (best.best_epoch + 1) * args.eval_every,
    'converged': bool(stopping.stopped_epoch),
    'seconds': seconds,
    'validation_curve': [round(float(v), 4) for v in history.history[schedules.MONITOR]],
  }


def model_resolution_mean_iou(model, arrays, num_classes: int) -> float:
  """Mean IoU at model resolution of `model` on in-memory (image, label, weight) arrays."""
  true_ids, valid = decode.labels_to_class_ids_np(arrays[1])
  predicted = decode.class_ids_np(model.predict(arrays[0], batch_size=16, verbose=0))
  return iou.mean_iou(iou.confusion_matrix(true_ids, predicted, valid, num_classes))


@functools.lru_cache(maxsize=2)  # a --jobs worker runs several cells of one data set
def load_in_process(dataset: str, threads: int, image_size: int = 64):
  """`prepare(dataset, image_size)` and the eval split's native masks, TensorFlow limited to `threads` CPU
  threads (0: all) in this process (a --jobs worker)."""
  if threads:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
  with tempfile.TemporaryDirectory() as workdir:
    data, eval_pattern = prepare(dataset, workdir, image_size)
    return data, native_masks(eval_pattern)
