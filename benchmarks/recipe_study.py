"""Which training recipe? Same model, loss, steps and data; augmentation and schedule varied.

    python benchmarks/recipe_study.py                    # demo + nuclei, 3 seeds, 300 steps
    python benchmarks/recipe_study.py --quick            # CI-sized smoke run
    python benchmarks/recipe_study.py --recipes today,flip --datasets nuclei --seeds 0

Each run trains `trainer.task.compiled_model` on in-memory arrays (`loss_study.fit_and_score`: the
Transform's own decode/normalise/one-hot functions, the nuclei tiles through `iouseg convert`) with
the Trainer's own augmentation (`trainer.augment`, applied to the shuffled batches as
`trainer.data.make_dataset` applies it) and learning-rate schedule (`trainer.schedules`, over the
run's steps). One epoch: best-epoch weights (`BestWeights`) play no part here. Prints (and with
--out writes) a markdown table: mean ± spread (half the max - min range) over seeds of eval and
train (un-augmented) mean IoU, their gap, and seconds per run.
"""
import argparse
import os
import pathlib
import platform
import sys
import tempfile

import tf_env  # noqa: F401  pylint: disable=unused-import  (first: sets up TensorFlow)

import numpy as np  # pylint: disable=wrong-import-position
import tensorflow as tf  # pylint: disable=wrong-import-position

import loss_study  # pylint: disable=wrong-import-position
from trainer.config import TrainerConfig  # pylint: disable=wrong-import-position

# Today's recipe (before issue 13): Adam at a constant rate, no augmentation. Every recipe sets
# every recipe field, so that the table does not change with TrainerConfig's defaults.
TODAY = dict(no_augment=True, random_scale=False, min_scale=0.5, max_scale=2.0, no_flip=False,
             vertical_flip=False, rotate90=False, photometric=False, lr_schedule='constant',
             warmup_steps=0, weight_decay=0.0)
FLIP = dict(no_augment=False)
# The proposal: DeepLab's scale range, horizontal flip, photometric jitter.
AUGMENT = dict(no_augment=False, random_scale=True, photometric=True)
SCHEDULE = dict(lr_schedule='poly')
# Name -> TrainerConfig fields. STUDY is the study; the rest explore.
RECIPES = {
    'today': TODAY,
    'augment': {**TODAY, **AUGMENT},
    'schedule': {**TODAY, **SCHEDULE},
    'both': {**TODAY, **AUGMENT, **SCHEDULE},
    'flip': {**TODAY, **FLIP},
    'flip+cosine': {**TODAY, **FLIP, 'lr_schedule': 'cosine'},
    'flip+photometric': {**TODAY, **FLIP, 'photometric': True},
    'mild-scale': {**TODAY, **AUGMENT, 'min_scale': 0.75, 'max_scale': 1.5},
    'cosine': {**TODAY, 'lr_schedule': 'cosine'},
    'poly+warmup': {**TODAY, **SCHEDULE, 'warmup_steps': 30},
    'both+wd': {**TODAY, **AUGMENT, **SCHEDULE, 'weight_decay': 1e-4},
    'all-geometric': {**TODAY, **FLIP, 'random_scale': True, 'vertical_flip': True,
                      'rotate90': True},
}
STUDY = ('today', 'augment', 'schedule', 'both', 'flip', 'flip+cosine')


def _mean_spread(values) -> str:
  values = np.asarray(values)
  return f'{values.mean():.3f} ± {(values.max() - values.min()) / 2:.3f}'


def table(results: dict, steps: int, seeds) -> str:
  lines = ['| data | recipe | what it trains with | eval mean IoU | train mean IoU | train - eval '
           '| s / run |', '| --- | --- | --- | --- | --- | --- | --- |']
  for (dataset, name, config), runs in results.items():
    gaps = [r['train_mean_iou'] - r['mean_iou'] for r in runs]
    lines.append(f'| {dataset} | {name} | {loss_study.recipe_text(config)} | '
                 f'{_mean_spread([r["mean_iou"] for r in runs])} | '
                 f'{_mean_spread([r["train_mean_iou"] for r in runs])} | {np.mean(gaps):+.3f} | '
                 f'{np.mean([r["seconds"] for r in runs]):.0f} |')
  lines.append('')
  lines.append(f'{steps} steps of batch 16 at 64 px, `soft_iou`, lr 3e-3, one epoch, seeds '
               f'{", ".join(map(str, seeds))}; mean ± half-range over seeds; IoU at model '
               f'resolution; train IoU on the un-augmented train split. Machine: '
               f'{platform.machine()}, {os.cpu_count()} CPU cores, '
               f'{"GPU" if tf.config.list_physical_devices("GPU") else "no GPU"}. '
               f'Command: `python benchmarks/recipe_study.py {" ".join(sys.argv[1:])}`'.rstrip())
  return '\n'.join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--datasets', default='demo,nuclei', help='(default: %(default)s)')
  parser.add_argument('--recipes', default=','.join(STUDY),
                      help=f'of {", ".join(RECIPES)} (default: %(default)s)')
  parser.add_argument('--seeds', default='0,1,2', help='(default: %(default)s)')
  parser.add_argument('--steps', type=int, default=300, help='(default: %(default)s)')
  parser.add_argument('--quick', action='store_true', help='demo only, 1 seed, 10 steps')
  parser.add_argument('--out', help='also write the markdown table here')
  args = parser.parse_args(argv)
  datasets, steps = args.datasets.split(','), args.steps
  seeds = [int(s) for s in args.seeds.split(',')]
  recipes = args.recipes.split(',')
  unknown = sorted(set(recipes) - set(RECIPES))
  if unknown:
    parser.error(f'unknown recipes {unknown}; known: {", ".join(RECIPES)}')
  if args.quick:
    datasets, seeds, steps = ['demo'], [0], 10

  results = {}
  with tempfile.TemporaryDirectory() as workdir:
    for dataset in datasets:
      data = loss_study.prepare(dataset, workdir)
      transform = data[0]
      for name in recipes:
        config = TrainerConfig(num_classes=transform.num_classes, image_size=transform.image_size,
                               channels=transform.channels, **RECIPES[name])
        runs = [loss_study.fit_and_score(config, seed, data, steps, batch_size=16, score_train=True)
                for seed in seeds]
        results[(dataset, name, config)] = runs
        print(f'{dataset} {name}: {runs}', file=sys.stderr, flush=True)
  markdown = table(results, steps, seeds)
  print(markdown)
  if args.out:
    pathlib.Path(args.out).write_text(markdown + '\n')
  return 0


if __name__ == '__main__':
  sys.exit(main())
