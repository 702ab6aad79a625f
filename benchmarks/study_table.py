"""The studies' tables: runs grouped by data set and by what a study varies (its `key`: loss,
recipe, encoder init), mean ± half-range over seeds, and differences paired seed by seed against
the study's baseline."""

import numpy as np

from trainer import augment
from trainer.config import TrainerConfig


def by_dataset(cells: list) -> list:
  """run_cell results -> one result per data set with all its runs, in the order they ran."""
  merged = {}
  for cell in cells:
    merged.setdefault(cell['dataset'], {**cell, 'runs': []})['runs'] += cell['runs']
  return list(merged.values())


def mean_spread(values) -> str:
  """'mean ± half the max - min range' of `values`."""
  values = np.asarray(values, dtype=np.float64)
  return f'{values.mean():.3f} ± {(values.max() - values.min()) / 2:.3f}'


def recipe_text(config: TrainerConfig) -> str:
  """The training recipe of `config` in a few words, e.g. 'Adam, constant lr, no augmentation'."""
  options = augment.AugmentOptions.from_config(config)
  optimizer = config.optimizer
  parts = [
    'AdamW' if optimizer.weight_decay > 0 else 'Adam',
    f'{optimizer.lr_schedule} lr'
    + (f' after {optimizer.warmup_steps} warm-up steps' if optimizer.warmup_steps else ''),
  ]
  if options is None:
    parts.append('no augmentation')
  else:
    geometric = []
    if (options.min_scale, options.max_scale) != (1.0, 1.0):
      geometric.append(f'scale {options.min_scale:g}-{options.max_scale:g}')
    geometric += [
      name
      for name, on in (
        ('h-flip', options.horizontal_flip),
        ('v-flip', options.vertical_flip),
        ('rot90', options.rotate90),
        ('photometric', options.photometric),
      )
      if on
    ]
    parts.append('augmentation: ' + ' + '.join(geometric))
  return ', '.join(parts)


def paired_differences(
  result: dict, name: str, *, key: str, baseline: str, metric=lambda run: run['mean_iou']
) -> list:
  """metric(run) - metric(the baseline's run) for each seed both ran, of the runs with run[key] ==
  name against those with run[key] == baseline."""
  by_seed = {(run[key], run['seed']): run for run in result['runs']}
  return [
    metric(by_seed[(name, seed)]) - metric(by_seed[(baseline, seed)])
    for (found, seed) in by_seed
    if found == name and (baseline, seed) in by_seed
  ]


def paired_cells(result: dict, name: str, *, key: str, baseline: str) -> tuple:
  """The '− baseline, paired' and 'seeds ahead' cells of the runs with run[key] == name: mean ±
  half-range of `paired_differences`, and how many seeds came out ahead; '—' for the baseline
  itself, or where no seed ran both."""
  paired = paired_differences(result, name, key=key, baseline=baseline)
  if not paired or name == baseline:
    return '—', '—'
  sign = '+' if np.mean(paired) >= 0 else ''
  return sign + mean_spread(paired), f'{sum(d > 0 for d in paired)}/{len(paired)}'


def steps_cell(runs: list) -> str:
  """The 'steps to best' cell: the mean best step, and how many runs stopped at --max-steps."""
  capped = sum(not run['converged'] for run in runs)
  steps = f'{np.mean([run["best_step"] for run in runs]):.0f}'
  return steps + (f' ({capped} capped)' if capped else '')


def run_groups(results: list, key: str):
  """(result, name, its runs) for each value of run[key] in each result, in the order they ran."""
  for result in results:
    for name in dict.fromkeys(run[key] for run in result['runs']):
      yield result, name, [run for run in result['runs'] if run[key] == name]
