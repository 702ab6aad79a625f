"""The encoders side by side: parameters, training images/s and peak memory per `--encoder`.

    nice -n 10 .venv/bin/python benchmarks/encoders.py                    # 256 px, batch 8
    nice -n 10 .venv/bin/python benchmarks/encoders.py --steps 3 --warmup 1 \
      --out benchmarks/results/encoders.md

Each encoder runs in a process of its own (so its peak resident memory is its own): the Trainer's
compiled model (`trainer.task.compiled_model`) trained on in-memory random batches of the model's
input shapes (`precision.random_batch`), so only the model's arithmetic is timed; the warm-up steps
(tracing) are left out of the clock (`steps.images_per_second`). Peak memory is the process's
maximum resident set, tracing and the model included. Eval mean IoU at an equal wall-clock budget
is not measured by this script.
"""

import argparse
import json
import resource
import subprocess
import sys

from trainer.config import ENCODERS, TrainerConfig

import report_table
import tf_env  # noqa: F401  (first: sets up TensorFlow)


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
  }


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--image-size', type=int, default=256)
  parser.add_argument('--base-filters', type=int, default=16)
  parser.add_argument('--batch-size', type=int, default=8)
  parser.add_argument('--steps', type=int, default=10, help='timed steps')
  parser.add_argument('--warmup', type=int, default=2, help='untimed steps first (tracing)')
  parser.add_argument('--encoders', default=','.join(ENCODERS))
  parser.add_argument('--one', help=argparse.SUPPRESS)  # the worker: one encoder, JSON out
  parser.add_argument('--out', help='also write the markdown here')
  args = parser.parse_args(argv)
  if args.one:
    print(json.dumps(measure(args.one, args)))
    return 0
  shared = [
    f'--{name.replace("_", "-")}={getattr(args, name)}'
    for name in ('image_size', 'base_filters', 'batch_size', 'steps', 'warmup')
  ]
  rows = []
  for encoder in args.encoders.split(','):
    out = subprocess.run(
      [sys.executable, __file__, '--one', encoder, *shared],
      check=True,
      capture_output=True,
      text=True,
    ).stdout
    rows.append(json.loads(out.strip().splitlines()[-1]))
  lines = report_table.header('encoder | parameters | train images/s | peak memory (MiB)')
  lines += [
    f'| {r["encoder"]} | {r["parameters"]:,} | {r["images_per_second"]:.2f} | {r["peak_mib"]:.0f} |'
    for r in rows
  ]
  lines += [
    '',
    f'{args.image_size}x{args.image_size}x3, batch {args.batch_size}, decoder base filters '
    f'{args.base_filters} (fcn: depth 3); {args.steps} timed steps after {args.warmup} untimed.',
  ]
  return report_table.publish(lines, args.out, 'encoders.py')


if __name__ == '__main__':
  sys.exit(main())
