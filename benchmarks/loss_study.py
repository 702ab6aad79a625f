"""Which loss trains the sigmoid FCN best? Same model, steps, schedule and data for every loss.

    python benchmarks/loss_study.py                      # demo + nuclei, 3 seeds
    python benchmarks/loss_study.py --quick              # CI-sized smoke run
    python benchmarks/loss_study.py --datasets demo --seeds 0 --out table.md

Data go through the Transform's own decode/normalise/one-hot functions (`trainer.in_memory`), the
nuclei tiles through `iouseg convert`, so no TFX run is needed per cell. Each run trains with the
Trainer's default recipe (`TrainerConfig`'s augmentation and learning-rate schedule, through
`trainer.augment` and `trainer.schedules`; `benchmarks/recipe_study.py` compares recipes). Prints
(and with --out writes) a markdown table: mean ± spread (half the max - min range) over seeds of
eval mean IoU and foreground IoU (mean over classes 1..C-1), and seconds per run.
"""
import argparse
import dataclasses
import os
import pathlib
import platform
import sys
import tempfile
import time

import tf_env  # noqa: F401  pylint: disable=unused-import  (first: sets up TensorFlow)

import numpy as np  # pylint: disable=wrong-import-position
import tensorflow as tf  # pylint: disable=wrong-import-position
import tf_keras  # pylint: disable=wrong-import-position

from iouseg import converters, demo_data  # pylint: disable=wrong-import-position
from trainer import augment, decode, in_memory, iou, task  # pylint: disable=wrong-import-position
from trainer.config import TrainerConfig  # pylint: disable=wrong-import-position
from trainer.losses import LOSS_NAMES  # pylint: disable=wrong-import-position
from transform.config import TransformConfig  # pylint: disable=wrong-import-position

SAMPLES = pathlib.Path(__file__).resolve().parents[1] / 'data' / 'samples'


@dataclasses.dataclass(frozen=True)
class Cell:
  dataset: str
  loss: str
  learning_rate: float
  head_init: str = 'zeros'


def prepare(dataset: str, workdir: str):
  """(TransformConfig, train arrays, eval arrays) for 'demo' or 'nuclei'."""
  if dataset == 'demo':
    root = os.path.join(workdir, 'demo')
    demo_data.write_demo_data(root)
    config = TransformConfig(image_size=64, channels=3, num_classes=demo_data.NUM_CLASSES)
  elif dataset == 'nuclei':
    root = os.path.join(workdir, 'nuclei')
    converters.convert(SAMPLES / 'nuclei', root, num_classes=2, strict=True)
    # The 128x128 tiles at 64x64: nuclei stay several pixels wide, and a step costs what a demo step does.
    config = TransformConfig(image_size=64, channels=1, num_classes=2)
  else:
    raise ValueError(f'unknown dataset {dataset!r}')
  train, evaluation = in_memory.load_train_eval(f'{root}/train/*', f'{root}/eval/*', config)
  return config, train, evaluation


def train_and_score(cell: Cell, seed: int, data, steps: int, batch_size: int) -> dict:
  config = data[0]
  trainer_config = TrainerConfig(num_classes=config.num_classes, image_size=config.image_size,
                                 channels=config.channels, loss=cell.loss,
                                 learning_rate=cell.learning_rate, head_init=cell.head_init)
  return fit_and_score(trainer_config, seed, data, steps, batch_size)


def _scores(model, arrays, num_classes: int, batch_size: int) -> dict:
  true_ids, valid = decode.labels_to_class_ids_np(arrays[1])
  predicted = decode.class_ids_np(model.predict(arrays[0], batch_size=batch_size, verbose=0))
  per_class = iou.per_class_iou(iou.confusion_matrix(true_ids, predicted, valid, num_classes))
  return {'mean_iou': float(np.nanmean(per_class)), 'fg_iou': float(np.nanmean(per_class[1:]))}


def fit_and_score(trainer_config: TrainerConfig, seed: int, data, steps: int, batch_size: int,
                  score_train: bool = False) -> dict:
  """Trains `trainer.task.compiled_model` for `steps` steps (one epoch) on the in-memory train
  arrays with the Trainer's recipe: its augmentation (`trainer.augment`, as `trainer.data` applies
  it) and its learning-rate schedule over `steps`. Eval (and with `score_train`, un-augmented train)
  mean and foreground IoU at model resolution, and the seconds `fit` took."""
  config, train, evaluation = data
  tf_keras.utils.set_random_seed(seed)
  priors = None
  if trainer_config.head_init == 'prior':
    priors = (train[1].sum((0, 1, 2)) / max(train[2].sum(), 1.0)).tolist()
  model = task.compiled_model(trainer_config, priors, total_steps=steps)
  dataset = augment.augment_dataset(
      tf.data.Dataset.from_tensor_slices(train).shuffle(len(train[0]), seed=seed).repeat()
      .batch(batch_size), augment.AugmentOptions.from_config(trainer_config), seed)
  start = time.perf_counter()
  model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
  seconds = time.perf_counter() - start
  result = {**_scores(model, evaluation, config.num_classes, batch_size), 'seconds': seconds}
  if score_train:
    result['train_mean_iou'] = _scores(model, train, config.num_classes, batch_size)['mean_iou']
  return result


def _mean_spread(values):
  values = np.asarray(values)
  return f'{values.mean():.3f} ± {(values.max() - values.min()) / 2:.3f}'


def recipe_text(config: TrainerConfig) -> str:
  """The training recipe of `config` in a few words, e.g. 'Adam, constant lr, no augmentation'."""
  options = augment.AugmentOptions.from_config(config)
  parts = ['AdamW' if config.weight_decay > 0 else 'Adam', f'{config.lr_schedule} lr' +
           (f' after {config.warmup_steps} warm-up steps' if config.warmup_steps else '')]
  if options is None:
    parts.append('no augmentation')
  else:
    geometric = []
    if (options.min_scale, options.max_scale) != (1.0, 1.0):
      geometric.append(f'scale {options.min_scale:g}-{options.max_scale:g}')
    geometric += [name for name, on in (('h-flip', options.horizontal_flip),
                                        ('v-flip', options.vertical_flip),
                                        ('rot90', options.rotate90),
                                        ('photometric', options.photometric)) if on]
    parts.append('augmentation: ' + ' + '.join(geometric))
  return ', '.join(parts)


def table(results: dict, steps: int, seeds) -> str:
  lines = ['| data | loss | lr | head init | eval mean IoU | foreground IoU | s / run |',
           '| --- | --- | --- | --- | --- | --- | --- |']
  for cell, runs in results.items():
    lines.append(f'| {cell.dataset} | `{cell.loss}` | {cell.learning_rate:g} | {cell.head_init} | '
                 f'{_mean_spread([r["mean_iou"] for r in runs])} | '
                 f'{_mean_spread([r["fg_iou"] for r in runs])} | '
                 f'{np.mean([r["seconds"] for r in runs]):.0f} |')
  lines.append('')
  lines.append(f'{steps} steps, batch 16, {recipe_text(TrainerConfig())}, seeds '
               f'{", ".join(map(str, seeds))}; mean ± half-range '
               f'over seeds. Machine: {platform.machine()}, {os.cpu_count()} CPU cores, '
               f'{"GPU" if tf.config.list_physical_devices("GPU") else "no GPU"}. '
               f'Command: `python benchmarks/loss_study.py {" ".join(sys.argv[1:])}`'.rstrip())
  return '\n'.join(lines)


def cells_for(datasets, learning_rates, quick: bool):
  cells = []
  for dataset in datasets:
    cells += [Cell(dataset, loss, 3e-3) for loss in LOSS_NAMES]
    cells.append(Cell(dataset, 'soft_iou', 3e-3, head_init='prior'))
    if not quick:
      cells += [Cell(dataset, 'soft_iou', lr) for lr in learning_rates if lr != 3e-3]
  return cells


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--datasets', default='demo,nuclei', help='(default: %(default)s)')
  parser.add_argument('--seeds', default='0,1,2', help='(default: %(default)s)')
  parser.add_argument('--steps', type=int, default=200, help='(default: %(default)s)')
  parser.add_argument('--learning-rates', default='3e-3,3e-2',
                      help='the soft_iou learning-rate sweep (default: %(default)s)')
  parser.add_argument('--quick', action='store_true', help='demo only, 1 seed, 10 steps, no sweep')
  parser.add_argument('--out', help='also write the markdown table here')
  args = parser.parse_args(argv)
  datasets, seeds, steps = args.datasets.split(','), [int(s) for s in args.seeds.split(',')], args.steps
  if args.quick:
    datasets, seeds, steps = ['demo'], [0], 10
  learning_rates = [float(lr) for lr in args.learning_rates.split(',')]

  results = {}
  with tempfile.TemporaryDirectory() as workdir:
    for dataset in datasets:
      data = prepare(dataset, workdir)
      for cell in [c for c in cells_for(datasets, learning_rates, args.quick) if c.dataset == dataset]:
        results[cell] = [train_and_score(cell, seed, data, steps, batch_size=16) for seed in seeds]
        print(f'{cell}: {results[cell]}', file=sys.stderr, flush=True)
  markdown = table(results, steps, seeds)
  print(markdown)
  if args.out:
    pathlib.Path(args.out).write_text(markdown + '\n')
  return 0


if __name__ == '__main__':
  sys.exit(main())
