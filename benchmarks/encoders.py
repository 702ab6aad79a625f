"""The encoders side by side: parameters, training images/s, peak memory, and eval mean IoU after
an equal wall-clock budget of training, per `--encoder`.

    nice -n 10 .venv/bin/python benchmarks/encoders.py                    # 256 px, batch 8
    nice -n 10 .venv/bin/python benchmarks/encoders.py --steps 3 --warmup 1 --budget-s 60 \
      --out benchmarks/results/encoders.md

Each encoder runs in a process of its own (so its peak resident memory is its own): the Trainer's
compiled model (`trainer.task.compiled_model`) trained on in-memory random batches of the model's
input shapes (`precision.random_batch`), so only the model's arithmetic is timed; the warm-up steps
(tracing) are left out of the clock (`steps.images_per_second`). Peak memory is the process's
maximum resident set, tracing and the model included, read before the budget runs load any data.

The budget runs (`--budget-s`, 0: none): a fresh model of the same settings (seed 0) trained with the
Trainer's default recipe (`convergence.train_batches`) on each of `--budget-sets` until `--budget-s`
seconds have passed since its first step ended (tracing left out, as above), then scored as the
Evaluator scores: eval mean IoU at each image's native resolution (`convergence.native_confusion`)
of the last weights. The VOC-like set (`voc_like.py`, 21 classes, 512x384 JPEGs) and the demo set
(4 classes, 96 px) are written once and each resized to `--image-size`, as Transform resizes them.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import tf_keras

from iouseg import demo_data
from trainer.config import ENCODERS, TrainerConfig
from transform.config import TransformConfig

import report_table
import tf_env  # noqa: F401  (first: sets up TensorFlow)
import voc_like

# The budget runs' sets: their class names (VOC-like: class ids as names).
BUDGET_SETS = {
  'voc_like': tuple(f'class_{k}' for k in range(voc_like.NUM_CLASSES)),
  'demo': demo_data.CLASS_NAMES,
}


def measure(encoder: str, args) -> dict:
  """This process's figures for `encoder`."""
  import tensorflow as tf

  from trainer import task

  import precision
  import steps

  config = TrainerConfig.from_flat(
    encoder=encoder,
    image_size=args.image_size,
    base_filters=args.base_filters,
    batch_size=args.batch_size,
  )
  model = task.compiled_model(config)
  dataset = tf.data.Dataset.from_tensors(precision.random_batch(config)).repeat()
  rate = steps.images_per_second(model, dataset, args.batch_size, args.steps, args.warmup)
  return {
    'encoder': encoder,
    'parameters': model.count_params(),
    'images_per_second': rate,
    'peak_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
    'budget': {name: budget_run(encoder, name, args) for name in args.budget_sets}
    if args.budget_s
    else {},
  }


def write_budget_sets(folder: str, args) -> None:
  """The budget runs' records, once for every encoder: FOLDER/<set>/{train,eval}/."""
  voc_like.write(os.path.join(folder, 'voc_like'), args.voc_train, args.voc_eval)
  demo_data.write_demo_data(os.path.join(folder, 'demo'))


class WallClock(tf_keras.callbacks.Callback):
  """Stops `fit` once `seconds` have passed since the first step ended (the first step traces the
  model); `steps` counts the steps that ran."""

  def __init__(self, seconds: float):
    super().__init__()
    self.seconds, self.start, self.steps = seconds, None, 0

  def on_train_batch_end(self, batch, logs=None):
    self.steps = batch + 1
    if self.start is None:
      self.start = time.perf_counter()
    elif time.perf_counter() - self.start >= self.seconds:
      self.model.stop_training = True


def budget_run(encoder: str, name: str, args) -> dict:
  """`encoder` trained for the wall-clock budget on the set `name`: steps run, eval mean IoU."""
  import numpy as np

  from trainer import in_memory, iou, task

  import convergence

  root = os.path.join(args.data_dir, name)
  names = BUDGET_SETS[name]
  data_config = TransformConfig(
    image_size=args.image_size, channels=3, num_classes=len(names), class_names=','.join(names)
  )
  train, evaluation = in_memory.load_train_eval(f'{root}/train/*', f'{root}/eval/*', data_config)
  config = TrainerConfig(data=data_config).replace(
    encoder=encoder, base_filters=args.base_filters, batch_size=args.batch_size
  )
  tf_keras.utils.set_random_seed(0)
  model = task.compiled_model(config)
  clock = WallClock(args.budget_s)
  model.fit(
    convergence.train_batches(train, config, 0, args.batch_size),
    steps_per_epoch=10**9,  # until the clock stops it
    epochs=1,
    callbacks=[clock],
    verbose=0,
  )
  masks = convergence.native_masks(f'{root}/eval/*')
  per_class = iou.per_class_iou(
    convergence.native_confusion(model, evaluation[0], masks, data_config)
  )
  return {'steps': clock.steps, 'mean_iou': float(np.nanmean(per_class))}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--image-size', type=int, default=256)
  parser.add_argument('--base-filters', type=int, default=16)
  parser.add_argument('--batch-size', type=int, default=8)
  parser.add_argument('--steps', type=int, default=10, help='timed steps')
  parser.add_argument('--warmup', type=int, default=2, help='untimed steps first (tracing)')
  parser.add_argument('--encoders', default=','.join(ENCODERS))
  parser.add_argument(
    '--budget-s',
    type=float,
    default=120,
    help='seconds of training per encoder and set before its eval mean IoU; 0: none '
    '(default: %(default)s)',
  )
  parser.add_argument('--budget-sets', default=','.join(BUDGET_SETS), help='(default: %(default)s)')
  parser.add_argument('--voc-train', type=int, default=200, help='VOC-like train images')
  parser.add_argument('--voc-eval', type=int, default=50, help='VOC-like eval images')
  parser.add_argument('--one', help=argparse.SUPPRESS)  # the worker: one encoder, JSON out
  parser.add_argument('--data-dir', help=argparse.SUPPRESS)  # the worker: the budget sets
  parser.add_argument('--out', help='also write the markdown here')
  args = parser.parse_args(argv)
  args.budget_sets = [name for name in args.budget_sets.split(',') if name]
  if args.one:
    print(json.dumps(measure(args.one, args)))
    return 0
  shared = [
    f'--{name.replace("_", "-")}={getattr(args, name)}'
    for name in ('image_size', 'base_filters', 'batch_size', 'steps', 'warmup', 'budget_s')
  ] + [f'--budget-sets={",".join(args.budget_sets)}']
  with tempfile.TemporaryDirectory() as folder:
    if args.budget_s:
      write_budget_sets(folder, args)
    rows = [
      json.loads(
        subprocess.run(
          [sys.executable, __file__, '--one', encoder, f'--data-dir={folder}', *shared],
          check=True,
          capture_output=True,
          text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
      )
      for encoder in args.encoders.split(',')
    ]
  return report_table.publish(table(rows, args), args.out, 'encoders.py')


def table(rows: list, args) -> list:
  budget = [
    f'{name}: {column}' for name in args.budget_sets for column in ('steps', 'eval mean IoU')
  ]
  lines = report_table.header(
    ' | '.join(['encoder', 'parameters', 'train images/s', 'peak memory (MiB)', *budget])
  )
  for r in rows:
    cells = [
      f'{r["budget"][n]["steps"]} | {r["budget"][n]["mean_iou"]:.3f}' for n in args.budget_sets
    ]
    lines.append(
      ' | '.join(
        [
          f'| {r["encoder"]}',
          f'{r["parameters"]:,}',
          f'{r["images_per_second"]:.2f}',
          f'{r["peak_mib"]:.0f}',
          *cells,
        ]
      )
      + ' |'
    )
  lines += [
    '',
    f'{args.image_size}x{args.image_size}x3, batch {args.batch_size}, decoder base filters '
    f'{args.base_filters} (fcn: depth 3); {args.steps} timed steps after {args.warmup} untimed.',
  ]
  if args.budget_s:
    lines.append(
      f'Budget runs: {args.budget_s:g} s of training per encoder and set after the first (tracing) '
      "step, seed 0, the Trainer's default recipe, no validation, last weights; eval mean IoU at "
      f'native resolution on {args.voc_eval} VOC-like eval images ({args.voc_train} train, '
      "512x384) and the demo set's 48 (192 train, 96 px), both resized to the model size for "
      'training. One seed and a short budget: a ranking at this budget, not at convergence.'
    )
  return lines


if __name__ == '__main__':
  sys.exit(main())
