"""Does the default horizontal flip cost anything on classes with a side? (issue 21's target)

    python benchmarks/lateral_study.py --recipes default,no-flip,flip-swap --image-size 32 \
        --max-steps 600 --jobs 3 --out benchmarks/results/lateral_study.md \
        --json benchmarks/results/lateral_study.json     # the recorded study: 3 seeds each
    python benchmarks/lateral_study.py --quick           # CI-sized smoke run

On `iouseg.demo_data`'s lateral set (class 1 a disc in the left third, class 2 a disc that looks the
same in the right third: only its side tells them apart), each recipe is one
`convergence.train_to_convergence` of the Trainer's default settings with one change:

- default: nothing changed; the class names are left_disc/right_disc, so the default flip swaps
  them (`trainer.lateral`);
- no-flip: `--no-horizontal-flip`;
- flip-swap: names class_0..class_2 and the explicit `--flip-swap 1:2`;
- unswapped: `--flip-swap none`, a mirror keeps its labels (what a run did before the guard;
  with names class_K the guard now stops such a run before training,
  tests/test_lateral.py::test_a_run_with_unnamed_side_classes_stops_before_training).

Every recipe is compared with the default seed by seed (same seed: same initial weights and data
order). Runs go to --jobs processes.
"""

import argparse
import sys

import numpy as np

from trainer import augment
from trainer.config import TrainerConfig

import convergence
import report_table
import study_cli
import study_table
import tf_env  # noqa: F401  (first: sets up TensorFlow)

DATASET = 'lateral'
BASELINE = 'default'
# Name -> the flat settings it changes from the Trainer's defaults on the lateral set.
RECIPES = {
  'default': {},
  'no-flip': {'horizontal_flip': False},
  'flip-swap': {'class_names': '', 'flip_swap': '1:2'},
  'unswapped': {'flip_swap': 'none'},
}


def recipe_config(data_config, recipe: str, loss: str) -> TrainerConfig:
  """The Trainer's defaults on `data_config` (the lateral set's) with `loss`, and the recipe's
  change."""
  return TrainerConfig(data=data_config).replace(loss=loss, **RECIPES[recipe])


def run_recipe(recipe: str, seed: int, args) -> dict:
  """One seed of one recipe, in this process with `args.threads` CPU threads."""
  data, masks = convergence.load_in_process(DATASET, args.threads, args.image_size)
  trainer_config = recipe_config(data[0], recipe, args.loss)
  run = {
    'recipe': recipe,
    'augmentation': augment.describe(trainer_config),
    **convergence.train_to_convergence(trainer_config, seed, data, masks, args),
  }
  print(f'{recipe} {run}', file=sys.stderr, flush=True)
  return {'dataset': DATASET, 'class_names': list(data[0].names), 'runs': [run]}


def table(results: list, args) -> list:
  names = results[0]['class_names']
  lines = report_table.header(
    'recipe | augmentation (as the summary says) | eval mean IoU | − default, paired | seeds ahead '
    f'| {names[1]} IoU | {names[2]} IoU | steps to best | s / run'
  )
  for result, recipe, runs in study_table.run_groups(results, 'recipe'):
    versus, ahead = study_table.paired_cells(result, recipe, key='recipe', baseline=BASELINE)
    lines.append(
      f'| {recipe} | {runs[0]["augmentation"]} | '
      f'{study_table.mean_spread([r["mean_iou"] for r in runs])} | {versus} | {ahead} | '
      f'{study_table.mean_spread([r["per_class_iou"][1] for r in runs])} | '
      f'{study_table.mean_spread([r["per_class_iou"][2] for r in runs])} | '
      f'{study_table.steps_cell(runs)} | {np.mean([r["seconds"] for r in runs]):.0f} |'
    )
  lines.append('')
  lines.append(
    f'Each run: the lateral set (192 train, 48 eval, written at {args.image_size} px), batch '
    f'{args.batch_size}, the '
    f"Trainer's defaults with `--loss {args.loss}`, but for the recipe's change, "
    f'validation every {args.eval_every} steps, stopped after {args.patience} without a better '
    f'validation mean IoU (or at {args.max_steps} steps: "capped"), best validation weights kept; '
    f'seeds {", ".join(map(str, args.seeds))}. Eval mean IoU at native resolution; mean ± '
    "half-range over seeds; paired: the same seed's default run subtracted. Seconds on "
    f'{args.threads or "all"} CPU thread(s) per run, {args.jobs} run(s) at a time.'
  )
  return lines


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument(
    '--recipes', default=','.join(RECIPES), help=f'of {", ".join(RECIPES)} (default: %(default)s)'
  )
  convergence.add_image_size_flag(parser)
  study_cli.add_loss_flag(parser, 'every recipe')
  study_cli.add_run_flags(
    parser,
    max_steps=1200,
    jobs_help='runs (recipe, seed) trained at once, in separate processes',
    json_help='also write every run (per-class IoU, validation curve, steps, seconds) here',
  )
  args = parser.parse_args(argv)

  def settings(parsed):
    return _settings(parser, parsed)

  if args.render:
    return study_cli.render(args.render, parser, settings, table, args.out, 'lateral_study.py')
  args = settings(args)
  cells = [(recipe, seed) for recipe in args.recipes for seed in args.seeds]
  results = study_table.by_dataset(
    study_cli.map_in_processes(run_recipe, args.jobs, *zip(*cells), [args] * len(cells))
  )
  return study_cli.publish(
    results, lambda: table(results, args), args.json, args.out, 'lateral_study.py'
  )


def _settings(parser, args):
  """Parsed flags -> the study's settings (recipes, --quick applied, jobs and threads)."""
  args.recipes = args.recipes.split(',')
  unknown = sorted(set(args.recipes) - set(RECIPES))
  if unknown:
    parser.error(f'unknown recipes {unknown}; recipes: {", ".join(RECIPES)}')
  return study_cli.apply_run_settings(
    args, tasks=lambda settings: len(settings.recipes) * len(settings.seeds)
  )


if __name__ == '__main__':
  sys.exit(main())
