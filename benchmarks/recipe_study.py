"""Which training recipe? Same model, loss, data and step budget; augmentation and schedule varied.

    python benchmarks/recipe_study.py --out benchmarks/results/recipe_study.md \
        --json benchmarks/results/recipe_study.json      # 3 data sets, 3 seeds, to convergence
    python benchmarks/recipe_study.py --quick            # CI-sized smoke run
    python benchmarks/recipe_study.py --recipes today,flip --datasets nuclei --seeds 0
    python benchmarks/recipe_study.py --datasets nuclei --recipes today,augment --image-size 128

Each run is one `convergence.train_to_convergence`: the Trainer's model and loss
(`trainer.task.compiled_model`, the recipe's `trainer.augment` options applied to the shuffled
batches as `trainer.data` applies them, its `trainer.schedules` learning rate over --max-steps),
validated every --eval-every steps, stopped once validation mean IoU has not improved for
--patience validations or at --max-steps, best validation weights kept (`BestWeights`, as the
Trainer exports). Scored as the Evaluator scores: eval mean IoU at each image's native resolution.
'demo-small' is the demo set with only its first 24 train records (same eval split): a small train
split that overfits, the case augmentation is for. Every recipe is compared with the 'today' recipe
(Adam, constant rate, no augmentation) seed by seed: same seed, same initial weights and data order.
Runs of a (data set, recipe) pair go to one of --jobs processes.
"""

import argparse
import os
import sys

import numpy as np

from trainer.config import TrainerConfig

import convergence
import report_table
import study_cli
import study_table
import tf_env  # noqa: F401  (first: sets up TensorFlow)

# The 'today' recipe, the one every other is compared with: Adam at a constant rate, no
# augmentation. Every recipe sets every recipe setting, the loss included, so that the table does
# not change with TrainerConfig's defaults.
TODAY = dict(
  loss='soft_iou_per_class',
  augment=False,
  random_scale=False,
  min_scale=0.5,
  max_scale=2.0,
  horizontal_flip=True,
  vertical_flip=False,
  rotate90=False,
  photometric=False,
  lr_schedule='constant',
  warmup_steps=0,
  weight_decay=0.0,
)
BASELINE = 'today'
FLIP = dict(augment=True)
# DeepLab's augmentation: its scale range, horizontal flip, photometric jitter.
AUGMENT = dict(augment=True, random_scale=True, photometric=True)
SCHEDULE = dict(lr_schedule='poly')
# Name -> TrainerConfig settings by their flat names. STUDY is the study; the rest explore.
RECIPES = {
  'today': TODAY,
  'flip': {**TODAY, **FLIP},
  'augment': {**TODAY, **AUGMENT},
  'schedule': {**TODAY, **SCHEDULE},
  'both': {**TODAY, **AUGMENT, **SCHEDULE},
  'flip+cosine': {**TODAY, **FLIP, 'lr_schedule': 'cosine'},
  'flip+photometric': {**TODAY, **FLIP, 'photometric': True},
  'mild-scale': {**TODAY, **AUGMENT, 'min_scale': 0.75, 'max_scale': 1.5},
  'poly+warmup': {**TODAY, **SCHEDULE, 'warmup_steps': 30},
  'both+wd': {**TODAY, **AUGMENT, **SCHEDULE, 'weight_decay': 1e-4},
  'all-geometric': {**TODAY, **AUGMENT, 'vertical_flip': True, 'rotate90': True},
}
STUDY = ('today', 'flip', 'augment', 'schedule', 'both')
DATASETS = ('demo', 'nuclei', 'demo-small')
SMALL_TRAIN_RECORDS = 24


def load(dataset: str, threads: int, image_size: int):
  """`convergence.load_in_process`, and 'demo-small': the demo set cut to its first train records."""
  if dataset != 'demo-small':
    return convergence.load_in_process(dataset, threads, image_size)
  (config, train, evaluation), masks = convergence.load_in_process('demo', threads, image_size)
  return (config, tuple(array[:SMALL_TRAIN_RECORDS] for array in train), evaluation), masks


def run_recipe(dataset: str, recipe: str, args) -> dict:
  """Every seed of one recipe on one data set, in this process with `args.threads` CPU threads."""
  data, masks = load(dataset, args.threads, args.image_size)
  config = data[0]
  trainer_config = TrainerConfig(data=config).replace(**RECIPES[recipe])
  runs = []
  for seed in args.seeds:
    runs.append(
      {
        'recipe': recipe,
        **convergence.train_to_convergence(trainer_config, seed, data, masks, args),
      }
    )
    print(f'{dataset} {runs[-1]}', file=sys.stderr, flush=True)
  return {'dataset': dataset, 'recipe': recipe, 'train_records': len(data[1][0]), 'runs': runs}


def _by_dataset(cells: list) -> list:
  """run_recipe results -> one {'dataset', 'train_records', 'runs'} per data set, in order."""
  merged = {}
  for cell in cells:
    merged.setdefault(
      cell['dataset'],
      {'dataset': cell['dataset'], 'train_records': cell['train_records'], 'runs': []},
    )['runs'] += cell['runs']
  return list(merged.values())


def _validation_gap(run: dict) -> float:
  """Un-augmented train mean IoU - the best validation mean IoU, both at model resolution."""
  return run['train_mean_iou'] - max(run['validation_curve'])


def table(results: list, args) -> list:
  lines = report_table.header(
    'data | recipe | what it trains with | eval mean IoU | − today, paired | seeds ahead '
    '| train − validation | steps to best | s / run'
  )
  for result, recipe, runs in study_table.run_groups(results, 'recipe'):
    versus, ahead = study_table.paired_cells(result, recipe, key='recipe', baseline=BASELINE)
    config = TrainerConfig.from_flat(**RECIPES[recipe])
    lines.append(
      f'| {result["dataset"]} ({result["train_records"]} train) | {recipe} | '
      f'{study_table.recipe_text(config)} | '
      f'{study_table.mean_spread([r["mean_iou"] for r in runs])} | {versus} | {ahead} | '
      f'{np.mean([_validation_gap(r) for r in runs]):+.3f} | {study_table.steps_cell(runs)} | '
      f'{np.mean([r["seconds"] for r in runs]):.0f} |'
    )
  lines.append('')
  lines.append(
    f'Each run: batch {args.batch_size}, {args.image_size} px, `{TODAY["loss"]}`, lr 3e-3, validation every '
    f'{args.eval_every} steps, stopped after {args.patience} without a better validation mean IoU '
    f'(or at {args.max_steps} steps: "capped"; schedules reach 0 there), best validation weights '
    f'kept; seeds {", ".join(map(str, args.seeds))}. Eval mean IoU at native resolution; mean ± '
    "half-range over seeds; paired: the same seed's run of today's recipe subtracted. Train − "
    'validation: un-augmented train mean IoU minus the best validation mean IoU, both at model '
    f'resolution (overfitting). Seconds on {args.threads or os.cpu_count()} CPU thread(s) per run, '
    f'{args.jobs} run(s) at a time.'
  )
  return lines


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--datasets', default=','.join(DATASETS), help='(default: %(default)s)')
  parser.add_argument(
    '--recipes', default=','.join(STUDY), help=f'of {", ".join(RECIPES)} (default: %(default)s)'
  )
  convergence.add_image_size_flag(parser)
  study_cli.add_run_flags(
    parser,
    max_steps=1000,
    jobs_help='(data set, recipe) pairs trained at once, in separate processes',
    json_help='also write every run (validation curve, steps, seconds) here',
  )
  args = parser.parse_args(argv)

  def settings(parsed):
    return _settings(parser, parsed)

  if args.render:
    return study_cli.render(args.render, parser, settings, table, args.out, 'recipe_study.py')
  args = settings(args)
  cells = [(dataset, recipe) for dataset in args.datasets for recipe in args.recipes]
  results = _by_dataset(
    study_cli.map_in_processes(run_recipe, args.jobs, *zip(*cells), [args] * len(cells))
  )
  return study_cli.publish(
    results, lambda: table(results, args), args.json, args.out, 'recipe_study.py'
  )


def _settings(parser, args):
  """Parsed flags -> the study's settings (lists, --quick applied, jobs and threads)."""
  args.datasets, args.recipes = args.datasets.split(','), args.recipes.split(',')
  unknown = sorted(set(args.recipes) - set(RECIPES)) + sorted(set(args.datasets) - set(DATASETS))
  if unknown:
    parser.error(
      f'unknown {unknown}; recipes: {", ".join(RECIPES)}; data sets: {", ".join(DATASETS)}'
    )
  return study_cli.apply_run_settings(
    args, tasks=lambda settings: len(settings.datasets) * len(settings.recipes)
  )


if __name__ == '__main__':
  sys.exit(main())
