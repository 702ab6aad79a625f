"""Which loss trains the sigmoid FCN best? Every loss trained until validation mean IoU stops improving.

    python benchmarks/loss_study.py --out benchmarks/results/loss_study.md \
        --json benchmarks/results/loss_study.json        # demo + nuclei, 3 seeds, to convergence
    python benchmarks/loss_study.py --quick              # CI-sized smoke run
    python benchmarks/loss_study.py --datasets nuclei --seeds 0 --losses soft_iou,cross_entropy
    python benchmarks/loss_study.py --datasets thin --image-size 32 --max-steps 600 --jobs 3 \
        --losses cross_entropy,soft_iou_per_class,cross_entropy+soft_iou_per_class \
        --add-to benchmarks/results/loss_study.json --out benchmarks/results/loss_study.md

Each run is `convergence.train_to_convergence`: the Trainer's model and recipe on in-memory data,
stopped once validation mean IoU stops improving, scored as the Evaluator scores (eval mean IoU at
each image's native resolution), plus the IoU of the rarest class (fewest train pixels). Same seed,
same weights at the start, same data order and augmentation for every loss, so each loss is also
compared with cross-entropy seed by seed (paired differences).
Runs go to --jobs parallel processes, each on its share of the CPU threads.
Data sets: the demo set, the nuclei tiles, and `iouseg.demo_data`'s 'lateral' (a left and a right
disc that only their side tells apart; named left_disc/right_disc, so the default flip swaps them)
and 'thin' (2-3 px curved bands), both written at the model size so the bands stay 2-3 px wide.
`--add-to JSON` adds this command's runs to a recorded study: its --render then gives the recorded
table unchanged and each added command's table under it.
"""

import argparse
import contextlib
import io
import json
import os
import pathlib
import sys
import tempfile

import numpy as np

from trainer.config import TrainerConfig
from trainer.losses import LOSS_NAMES, LOSSES

import convergence
import report_table
import study_cli
import study_table
import tf_env  # noqa: F401  (first: sets up TensorFlow)

BASELINE = 'cross_entropy'
# The rule for the default: how far below cross-entropy (mean paired eval mean IoU) a loss may be on
# any set, the issue's own tolerance for losing nothing (1 point).
RULE_TOLERANCE = 0.01
# Every loss of trainer/losses.py, and cross-entropy then the soft IoU (Berman et al.'s advice).
STUDY_LOSSES = tuple(LOSSES) + ('cross_entropy>soft_iou',)


def run_cell(dataset: str, loss: str, seed: int, args) -> dict:
  """One loss and seed on one dataset, in this process with `args.threads` CPU threads."""
  data, masks = convergence.load_in_process(dataset, args.threads, args.image_size)
  trainer_config = TrainerConfig(data=data[0]).replace(loss=loss)
  run = {'loss': loss, **convergence.train_to_convergence(trainer_config, seed, data, masks, args)}
  print(f'{dataset} {run}', file=sys.stderr, flush=True)
  return {
    'dataset': dataset,
    'class_names': list(convergence.CLASS_NAMES[dataset]),
    'train_pixels_per_class': data[1][1].sum((0, 1, 2)).tolist(),
    'runs': [run],
  }


def _rarest_class(result: dict) -> int:
  """The class with the fewest train pixels."""
  return int(np.argmin(result['train_pixels_per_class']))


def table(results: list, args) -> str:
  lines = report_table.header(
    'data | loss | eval mean IoU | − cross-entropy, paired | seeds ahead | rarest class IoU '
    '| steps to best | s / run'
  )
  for result, loss, runs in study_table.run_groups(results, 'loss'):
    rarest = _rarest_class(result)
    versus, ahead = study_table.paired_cells(result, loss, key='loss', baseline=BASELINE)
    lines.append(
      f'| {result["dataset"]} | `{loss}` | {study_table.mean_spread([r["mean_iou"] for r in runs])} | '
      f'{versus} | {ahead} | '
      f'{study_table.mean_spread([r["per_class_iou"][rarest] for r in runs])} | {study_table.steps_cell(runs)} | '
      f'{np.mean([r["seconds"] for r in runs]):.0f} |'
    )
  names = ', '.join(f'{r["dataset"]}: {r["class_names"][_rarest_class(r)]}' for r in results)
  lines.append('')
  for result in results:
    capped = [run for run in result['runs'] if not run['converged']]
    if capped:
      gains = [
        run['validation_curve'][-1] - run['validation_curve'][-1 - args.patience]
        for run in capped
        if len(run['validation_curve']) > args.patience
      ]
      lines.append(
        f'{result["dataset"]}: {len(capped)} of {len(result["runs"])} runs capped; '
        f'their validation mean IoU changed by {np.mean(gains):+.4f} on average over their '
        f'last {args.patience * args.eval_every} steps.'
        if gains
        else f'{result["dataset"]}: {len(capped)} of {len(result["runs"])} runs capped.'
      )
      lines.append('')
  lines.append(
    f'Each run: batch {args.batch_size}, {study_table.recipe_text(TrainerConfig())}, validation every '
    f'{args.eval_every} steps, stopped after {args.patience} without a better validation mean IoU '
    f'(or at {args.max_steps} steps: "capped"), best validation weights kept; seeds '
    f'{", ".join(map(str, args.seeds))}. Eval mean IoU at native resolution; mean ± half-range '
    f"over seeds; paired: the same seed's cross-entropy run subtracted. Rarest class ({names}). "
    f'Seconds on {args.threads or os.cpu_count()} CPU thread(s) per run, {args.jobs} run(s) at a '
    'time.'
  )
  return lines


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument(
    '--datasets',
    default='demo,nuclei',
    help=f'of {", ".join(convergence.DATASETS)} (default: %(default)s)',
  )
  parser.add_argument('--losses', default=','.join(STUDY_LOSSES), help='(default: %(default)s)')
  convergence.add_image_size_flag(parser)
  study_cli.add_run_flags(
    parser,
    max_steps=1500,
    jobs_help='runs (data set, loss, seed) trained at once, in separate processes',
    json_help='also write every run (per-class IoU, validation curve, steps, seconds) here',
  )
  parser.add_argument(
    '--add-to',
    metavar='JSON',
    help="add this command's runs to a recorded --json file (its 'added' list), and write "
    'the whole of it, rendered, to --out',
  )
  args = parser.parse_args(argv)
  if args.render:
    return render(args.render, parser, args.out)
  args = _settings(args)
  cells = [(d, loss, seed) for d in args.datasets for loss in args.losses for seed in args.seeds]
  results = study_table.by_dataset(
    study_cli.map_in_processes(run_cell, args.jobs, *zip(*cells), [args] * len(cells))
  )
  if not args.add_to:
    return study_cli.publish(
      results, lambda: table(results, args), args.json, args.out, 'loss_study.py'
    )
  with tempfile.TemporaryDirectory() as workdir:
    added = os.path.join(workdir, 'added.json')
    study_cli.publish(results, lambda: table(results, args), added, None, 'loss_study.py')
    recorded = json.loads(pathlib.Path(args.add_to).read_text())
    recorded.setdefault('added', []).append(json.loads(pathlib.Path(added).read_text()))
  pathlib.Path(args.add_to).write_text(json.dumps(recorded, indent=1) + '\n')
  return render(args.add_to, parser, args.out)


def render(path: str, parser, out) -> int:
  """`study_cli.render` of a --json file's runs, then of each command --add-to added, in order,
  each table under its own command; with added commands, then the default's rule over them all
  (`rule_lines`)."""
  recorded = json.loads(pathlib.Path(path).read_text())
  parts = [recorded] + recorded.get('added', [])
  tables = io.StringIO()
  with tempfile.TemporaryDirectory() as workdir, contextlib.redirect_stdout(tables):
    for k, part in enumerate(parts):
      part_path = os.path.join(workdir, f'{k}.json')
      pathlib.Path(part_path).write_text(json.dumps(part))
      if k:
        print()
      study_cli.render(part_path, parser, _settings, table, None, 'loss_study.py')
    if len(parts) > 1:
      print('\n'.join(rule_lines(parts)))
  print(tables.getvalue(), end='')
  if out:
    pathlib.Path(out).write_text(tables.getvalue())
  return 0


def rule_lines(parts: list) -> list:
  """The rule the default loss follows, applied to every data set of every recorded command: each
  loss's mean paired difference from cross-entropy on each set (runs paired within a set, whichever
  command ran them: add runs to a set only with that set's settings), their mean over the sets it
  ran on, and whether it is never worse than cross-entropy by more than `RULE_TOLERANCE` (mean
  paired difference) on any of them. A loss is eligible only with runs on every set.

  Not the seed spread as the tolerance: where every seed converges alike the spread is a tenth of
  a point and rejects a loss for noise, while one stalled seed widens it enough to pass a loss
  that lost half its classes there."""
  runs = {}
  for part in parts:
    for result in part['results']:
      runs.setdefault(result['dataset'], []).extend(result['runs'])
  losses = dict.fromkeys(run['loss'] for found in runs.values() for run in found)
  lines = [
    '',
    'The default: of the losses run on every set, the one with the best mean paired difference '
    f'from cross-entropy, never worse than cross-entropy by more than {RULE_TOLERANCE:.2f} '
    '(mean paired) on any set.',
    '',
  ] + report_table.header(
    f'loss | {" | ".join(runs)} | sets | mean | within {RULE_TOLERANCE:.2f} of cross-entropy '
    'everywhere'
  )
  eligible = {}
  for loss in losses:
    if loss == BASELINE:
      continue
    cells, means, within = [], [], True
    for found in runs.values():
      paired = study_table.paired_differences({'runs': found}, loss, key='loss', baseline=BASELINE)
      if not paired:
        cells.append('—')
        continue
      means.append(np.mean(paired))
      within &= means[-1] >= -RULE_TOLERANCE
      cells.append(f'{means[-1]:+.3f}')
    lines.append(
      f'| `{loss}` | {" | ".join(cells)} | {len(means)} | {np.mean(means):+.3f} | '
      f'{"yes" if within else "no"} |'
    )
    if within and len(means) == len(runs):
      eligible[loss] = np.mean(means)
  chosen = max(eligible, key=eligible.get) if eligible else BASELINE
  return lines + ['', f'By the rule, the default is `{chosen}`.']


def _settings(args):
  """Parsed flags -> the study's settings (lists, --quick applied, jobs and threads)."""
  args.datasets, args.losses = args.datasets.split(','), args.losses.split(',')
  unknown = sorted(set(args.datasets) - set(convergence.DATASETS)) + sorted(
    set(args.losses) - set(LOSS_NAMES)
  )
  if unknown:
    sys.exit(
      f'loss_study.py: unknown {unknown}; data sets: {", ".join(convergence.DATASETS)}; '
      f'losses: {", ".join(LOSS_NAMES)}'
    )
  return study_cli.apply_run_settings(
    args, tasks=lambda settings: len(settings.datasets) * len(settings.losses) * len(settings.seeds)
  )


if __name__ == '__main__':
  sys.exit(main())
