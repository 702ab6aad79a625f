"""GPU path benchmark: training images/s in float32 and mixed precision, with and without XLA.

    .venv/bin/python benchmarks/precision.py                 # GPU-sized model (256 px, 32 filters, depth 4)
    .venv/bin/python benchmarks/precision.py --image-size 64 --base-filters 16 --depth 3   # the demo model

Builds the Trainer's compiled model (`trainer.task.compiled_model`) once per setting, exactly as
`run_fn` does (`trainer.distribution.configure_precision`, then `runtime.jit_compile`), and
trains it on in-memory random tensors, so only the model's arithmetic is timed. The policy column
says what ran: `mixed_precision` falls back to float32 where no GPU is visible, so on a CPU the mixed
rows measure the float32 model again (the target, mixed >= 2 x float32, is for GPUs).
"""

import argparse
import sys

import tensorflow as tf
import tf_keras

from trainer import distribution, task
from trainer.config import TrainerConfig

import report_table
import steps
import tf_env  # noqa: F401  (first: sets up TensorFlow)

TARGET = 2.0
SETTINGS = {  # name -> (mixed_precision, jit_compile)
  'float32': (False, False),
  'mixed_float16': (True, False),
  'float32 + XLA': (False, True),
  'mixed_float16 + XLA': (True, True),
}


def random_batch(config: TrainerConfig):
  """One batch of the model's input shapes: normalised image, one-hot label, all-valid weights."""
  settings = config.data
  shape = [config.runtime.batch_size, settings.image_size, settings.image_size]
  ids = tf.random.uniform(shape, maxval=settings.num_classes, dtype=tf.int32, seed=0)
  return (
    tf.random.normal(shape + [settings.channels], seed=0),
    tf.one_hot(ids, settings.num_classes),
    tf.ones(shape),
  )


def measure(config: TrainerConfig, steps_timed: int, warmup: int):
  """(images/s, the compute dtype that ran) of one setting."""
  distribution.configure_precision(config.runtime.mixed_precision)
  model = task.compiled_model(config)
  dataset = tf.data.Dataset.from_tensors(random_batch(config)).repeat()
  rate = steps.images_per_second(model, dataset, config.runtime.batch_size, steps_timed, warmup)
  return rate, tf_keras.mixed_precision.global_policy().name


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--image-size', type=int, default=256)
  parser.add_argument('--base-filters', type=int, default=32)
  parser.add_argument('--depth', type=int, default=4)
  parser.add_argument('--batch-size', type=int, default=16)
  parser.add_argument('--steps', type=int, default=30, help='timed steps per turn')
  parser.add_argument('--warmup', type=int, default=5, help='untimed steps per turn (XLA compiles)')
  parser.add_argument('--repeats', type=int, default=2, help='turns of each setting (median kept)')
  parser.add_argument('--out', help='also write the markdown here')
  args = parser.parse_args(argv)
  gpus = tf.config.list_physical_devices('GPU')
  for gpu in gpus:  # the settings run one after another: let each take only what it needs
    tf.config.experimental.set_memory_growth(gpu, True)

  configs = {
    name: TrainerConfig.from_flat(
      image_size=args.image_size,
      base_filters=args.base_filters,
      depth=args.depth,
      batch_size=args.batch_size,
      mixed_precision=mixed,
      jit_compile=jit,
    )
    for name, (mixed, jit) in SETTINGS.items()
  }
  policies = {}

  def run(name):
    rate, policies[name] = measure(configs[name], args.steps, args.warmup)
    return rate

  rates = steps.interleaved({name: (lambda n=name: run(n)) for name in configs}, args.repeats)
  base = rates['float32']
  lines = [
    '| setting | policy that ran | images/s | ratio to float32 |',
    '| --- | --- | --- | --- |',
  ]
  lines += [
    f'| {name} | {policies[name]} | {rate:.1f} | {rate / base:.2f} |'
    for name, rate in rates.items()
  ]
  device = (
    tf.config.experimental.get_device_details(gpus[0]).get('device_name', 'GPU')
    if gpus
    else 'no GPU'
  )
  lines += [
    '',
    f'Target on a GPU: mixed_float16 >= {TARGET} x float32. Model: FCN '
    f'{args.image_size}x{args.image_size}x3, base filters {args.base_filters}, depth '
    f'{args.depth}, batch {args.batch_size}; median of {args.repeats} interleaved turns of '
    f'{args.steps} steps after {args.warmup} untimed.',
  ]
  return report_table.publish(lines, args.out, 'precision.py', device=f', {device}')


if __name__ == '__main__':
  sys.exit(main())
