"""Which training recipe? Same model, loss, steps and data; augmentation and schedule varied.

    python benchmarks/recipe_study.py                    # demo + nuclei, 3 seeds, 300 steps
    python benchmarks/recipe_study.py --quick            # CI-sized smoke run
    python benchmarks/recipe_study.py --recipes today,flip --datasets nuclei --seeds 0

Each run trains `trainer.task.compiled_model` on in-memory arrays (`fit_and_score`: the
Transform's own decode/normalise/one-hot functions, the nuclei tiles through `iouseg convert`) with
the Trainer's own augmentation (`trainer.augment`, applied to the shuffled batches as
`trainer.data.make_dataset` applies it) and learning-rate schedule (`trainer.schedules`, over the
run's steps). One epoch: best-epoch weights (`BestWeights`) play no part here. Prints (and with
--out writes) a markdown table: mean ± spread (half the max - min range) over seeds of eval and
train (un-augmented) mean IoU, their gap, and seconds per run.
"""
import argparse
import sys
import tempfile
import time

import tf_env  # noqa: F401  pylint: disable=unused-import  (first: sets up TensorFlow)

import numpy as np  # pylint: disable=wrong-import-position
import tensorflow as tf  # pylint: disable=wrong-import-position
import tf_keras  # pylint: disable=wrong-import-position

import loss_study  # pylint: disable=wrong-import-position
import report_table  # pylint: disable=wrong-import-position
from trainer import decode, iou, task  # pylint: disable=wrong-import-position
from trainer.config import TrainerConfig  # pylint: disable=wrong-import-position

# Today's recipe (before issue 13): Adam at a constant rate, no augmentation. Every recipe sets
# every recipe field, so that the table does not change with TrainerConfig's defaults.
TODAY = dict(loss='soft_iou', no_augment=True, random_scale=False, min_scale=0.5, max_scale=2.0, no_flip=False,
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


def _mean_iou(model, arrays, num_classes: int, batch_size: int) -> float:
  """Mean IoU at model resolution of `model` on in-memory (image, label, weight) arrays."""
  true_ids, valid = decode.labels_to_class_ids_np(arrays[1])
  predicted = decode.class_ids_np(model.predict(arrays[0], batch_size=batch_size, verbose=0))
  return float(np.nanmean(iou.per_class_iou(
      iou.confusion_matrix(true_ids, predicted, valid, num_classes))))


def fit_and_score(trainer_config: TrainerConfig, seed: int, data, steps: int,
                  batch_size: int) -> dict:
  """Trains `trainer.task.compiled_model` for `steps` steps (one epoch) on the in-memory train
  arrays with the config's augmentation and learning-rate schedule over `steps`. Eval and
  un-augmented train mean IoU at model resolution, and the seconds `fit` took."""
  config, train, evaluation = data
  tf_keras.utils.set_random_seed(seed)
  model = task.compiled_model(trainer_config, total_steps=steps)
  start = time.perf_counter()
  model.fit(loss_study.train_batches(train, trainer_config, seed, batch_size),
            steps_per_epoch=steps, epochs=1, verbose=0)
  seconds = time.perf_counter() - start
  return {'mean_iou': _mean_iou(model, evaluation, config.num_classes, batch_size),
          'train_mean_iou': _mean_iou(model, train, config.num_classes, batch_size),
          'seconds': seconds}


def table(results: dict, steps: int, seeds) -> str:
  lines = ['| data | recipe | what it trains with | eval mean IoU | train mean IoU | train - eval '
           '| s / run |', '| --- | --- | --- | --- | --- | --- | --- |']
  for (dataset, name, config), runs in results.items():
    gaps = [r['train_mean_iou'] - r['mean_iou'] for r in runs]
    lines.append(f'| {dataset} | {name} | {loss_study.recipe_text(config)} | '
                 f'{loss_study.mean_spread([r["mean_iou"] for r in runs])} | '
                 f'{loss_study.mean_spread([r["train_mean_iou"] for r in runs])} | {np.mean(gaps):+.3f} | '
                 f'{np.mean([r["seconds"] for r in runs]):.0f} |')
  lines.append('')
  lines.append(f'{steps} steps of batch 16 at 64 px, `soft_iou`, lr 3e-3, one epoch, seeds '
               f'{", ".join(map(str, seeds))}; mean ± half-range over seeds; IoU at model '
               f'resolution; train IoU on the un-augmented train split.')
  return lines


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
      data, _ = loss_study.prepare(dataset, workdir)
      transform = data[0]
      for name in recipes:
        config = TrainerConfig(num_classes=transform.num_classes, image_size=transform.image_size,
                               channels=transform.channels, **RECIPES[name])
        runs = [fit_and_score(config, seed, data, steps, batch_size=16) for seed in seeds]
        results[(dataset, name, config)] = runs
        print(f'{dataset} {name}: {runs}', file=sys.stderr, flush=True)
  return report_table.publish(table(results, steps, seeds), args.out, 'recipe_study.py', device=(
      ', GPU' if tf.config.list_physical_devices('GPU') else ', no GPU'))


if __name__ == '__main__':
  sys.exit(main())
