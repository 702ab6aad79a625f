"""Tracing cost of the Trainer's first step, with and without AutoGraph rewriting tf_keras's code.

    .venv/bin/python benchmarks/tracing.py --out benchmarks/results/tracing.md

`trainer/tracing.py` adds the `tf_keras` DoNotConvert rule when `trainer.task.compiled_model` builds
the model. Each measurement is a fresh interpreter (AutoGraph's rules and caches are
process-wide): it builds the demo model under the Trainer's MirroredStrategy, removes the rule
again for the 'rewrite' setting (TensorFlow 2.16's own behaviour), and times the first `fit` step
with one validation step (tracing the train and test functions) and then 20 steps more (no
tracing), on in-memory random batches. The settings alternate, `--repeats` times each; prints
seconds and the ratio of first steps.
"""

import argparse
import json
import subprocess
import sys
import time

import numpy as np

import report_table
import tf_env  # noqa: F401  (first: sets up TensorFlow)

SETTINGS = ('rewrite', 'skip')  # AutoGraph converts tf_keras's code; it does not (the Trainer's)
STEPS_AFTER = 20


def _measure(setting: str) -> dict:
  """Runs in the child: the first fit step with validation, then STEPS_AFTER steps, in seconds."""
  import tensorflow as tf
  from tensorflow.python.autograph.core import config as autograph_config

  from trainer import task
  from trainer.config import TrainerConfig

  config = TrainerConfig.from_flat(num_classes=4, image_size=64, channels=3)
  with tf.distribute.MirroredStrategy().scope():
    model = task.compiled_model(config, total_steps=100)
  if setting == 'rewrite':
    autograph_config.CONVERSION_RULES = tuple(
      rule
      for rule in autograph_config.CONVERSION_RULES
      if not (isinstance(rule, autograph_config.DoNotConvert) and rule.matches('tf_keras'))
    )
  rng = np.random.default_rng(0)
  size, batch = config.data.image_size, config.runtime.batch_size
  images = rng.random((4 * batch, size, size, 3), np.float32)
  labels = np.eye(config.data.num_classes, dtype=np.float32)[
    rng.integers(0, 4, (4 * batch, size, size))
  ]
  weights = np.ones((4 * batch, size, size), np.float32)
  dataset = tf.data.Dataset.from_tensor_slices((images, labels, weights)).batch(batch).repeat()
  start = time.perf_counter()
  model.fit(
    dataset, steps_per_epoch=1, epochs=1, validation_data=dataset, validation_steps=1, verbose=0
  )
  first = time.perf_counter() - start
  start = time.perf_counter()
  model.fit(dataset, steps_per_epoch=STEPS_AFTER, epochs=1, verbose=0)
  return {'setting': setting, 'first_step': first, 'steps_after': time.perf_counter() - start}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--repeats', type=int, default=2, help='(default: %(default)s)')
  parser.add_argument('--out', help='also write the markdown here')
  parser.add_argument('--child', choices=SETTINGS, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    print(json.dumps(_measure(args.child)))
    return 0
  runs = []
  for _ in range(args.repeats):
    for setting in SETTINGS:
      output = subprocess.run(
        [sys.executable, __file__, '--child', setting], check=True, capture_output=True, text=True
      ).stdout
      runs.append(json.loads(output.strip().splitlines()[-1]))
  first = {s: [r['first_step'] for r in runs if r['setting'] == s] for s in SETTINGS}
  lines = [
    '| AutoGraph on tf_keras code | first fit step + validation step (s) | '
    f'{STEPS_AFTER} steps after (s) |',
    '| --- | --- | --- |',
  ]
  for setting in SETTINGS:
    after = [r['steps_after'] for r in runs if r['setting'] == setting]
    lines.append(
      f'| {setting} | {", ".join(f"{v:.1f}" for v in first[setting])} | '
      f'{", ".join(f"{v:.2f}" for v in after)} |'
    )
  lines += [
    '',
    f'First step, skip / rewrite: {np.mean(first["skip"]) / np.mean(first["rewrite"]):.2f} '
    f'(means of {args.repeats} fresh processes each). Demo model (64 px, 16 filters, depth 3, '
    '4 classes, batch 16), MirroredStrategy as in the Trainer, random in-memory batches.',
  ]
  return report_table.publish(lines, args.out, 'tracing.py')


if __name__ == '__main__':
  sys.exit(main())
