"""What the scale benchmark's in-memory limit holds, step by step, and whether validation or the
Trainer's callbacks add to it.

    .venv/bin/python benchmarks/limit_probe.py [--image-size 512 --num-classes 21 --batch-size 4]

Each variant is a fresh subprocess of `scale.py`'s limit (`trainer.task.compiled_model` trained 4
steps on one random batch held in memory): `train` as the limit; `validation` with a validation step
on the same batch in `fit`, as the Trainer runs; `callbacks` also with the Trainer's TensorBoard and
predicted-mask callbacks. Each prints its resident memory after importing TensorFlow, after building
the model and the batch, and its peak (VmHWM).
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile

import report_table

VARIANTS = ('train', 'validation', 'callbacks')


def child(variant: str, args) -> None:
  import psutil

  process = psutil.Process()
  import tensorflow as tf
  import tf_keras

  import tf_env  # noqa: F401  (sets up TensorFlow)

  imported = process.memory_info().rss / 2**20
  from trainer import task, tensorboard_images
  from trainer.config import TrainerConfig

  import precision

  config = TrainerConfig.from_flat(
    image_size=args.image_size, num_classes=args.num_classes, batch_size=args.batch_size
  )
  model = task.compiled_model(config)
  dataset = tf.data.Dataset.from_tensors(precision.random_batch(config)).repeat()
  built = process.memory_info().rss / 2**20
  extra = {}
  if variant != 'train':
    extra = {'validation_data': dataset, 'validation_steps': 1}
  if variant == 'callbacks':
    logs = tempfile.mkdtemp()
    extra['callbacks'] = [
      tf_keras.callbacks.TensorBoard(log_dir=logs, update_freq='epoch'),
      tensorboard_images.PredictedMasks.from_dataset(dataset, logs, args.num_classes),
    ]
  model.fit(dataset, epochs=1, steps_per_epoch=4, verbose=0, **extra)
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print(f'| {variant} | {imported:.0f} | {built:.0f} | {peak:.0f} |')


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--image-size', type=int, default=512)
  parser.add_argument('--num-classes', type=int, default=21)
  parser.add_argument('--batch-size', type=int, default=4)
  parser.add_argument('--out', help='also write the markdown here')
  parser.add_argument('--child', choices=VARIANTS, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    child(args.child, args)
    return 0
  lines = report_table.header(
    'variant | MiB after importing TensorFlow | with the model and batch | peak MiB'
  )
  flags = ['--image-size', str(args.image_size), '--num-classes', str(args.num_classes)]
  flags += ['--batch-size', str(args.batch_size)]
  env = {**os.environ, 'TF_USE_LEGACY_KERAS': '1'}
  for variant in VARIANTS:
    result = subprocess.run(
      [sys.executable, os.path.abspath(__file__), *flags, '--child', variant],
      env=env,
      capture_output=True,
      text=True,
    )
    if result.returncode:
      raise RuntimeError(f'{variant} failed: {result.stderr[-2000:]}')
    lines.append(result.stdout.strip().splitlines()[-1])
  lines += [
    '',
    f'{args.image_size} px, {args.num_classes} classes, batch {args.batch_size}, 4 steps; one '
    'fresh process per variant.',
  ]
  return report_table.publish(lines, args.out, 'limit_probe.py')


if __name__ == '__main__':
  sys.exit(main())
