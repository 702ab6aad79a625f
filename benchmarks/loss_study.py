"""Which loss trains the sigmoid FCN best? Every loss trained until validation mean IoU stops improving.

    python benchmarks/loss_study.py --out benchmarks/results/loss_study.md \
        --json benchmarks/results/loss_study.json        # demo + nuclei, 3 seeds, to convergence
    python benchmarks/loss_study.py --quick              # CI-sized smoke run
    python benchmarks/loss_study.py --datasets nuclei --seeds 0 --losses soft_iou,cross_entropy
    python benchmarks/loss_study.py --datasets thin --image-size 32 --max-steps 600 --jobs 3 \
        --losses cross_entropy,soft_iou_per_class,cross_entropy+soft_iou_per_class \
        --add-to benchmarks/results/loss_study.json --out benchmarks/results/loss_study.md

Data go through the Transform's own decode/normalise/one-hot functions (`trainer.in_memory`), the
nuclei tiles through `iouseg convert`, so no TFX run is needed per cell. Each run is the Trainer's
model and default recipe (`trainer.task.compiled_model`, `trainer.augment`, `schedules.BestWeights`)
with one change: training stops once validation mean IoU (the Trainer's `val_mean_iou`, on the eval
split at model resolution, what `BestWeights` selects on) has not improved for `--patience`
evaluations of `--eval-every` steps (Keras `EarlyStopping`; for 'FIRST>SECOND' losses only counted
from the switch at `loss_switch` of `--max-steps`), or at `--max-steps`; the best evaluation's
weights are kept. Scored as the Evaluator scores: eval mean IoU at each image's native resolution
(probabilities resized back as the exported model does), and the IoU of the rarest class (fewest
train pixels). Same seed, same weights at the start, same data order and augmentation for every
loss, so each loss is also compared with cross-entropy seed by seed (paired differences).
Runs go to --jobs parallel processes, each on its share of the CPU threads.
Data sets: the demo set, the nuclei tiles, and `iouseg.demo_data`'s 'lateral' (a left and a right
disc that only their side tells apart; named left_disc/right_disc, so the default flip swaps them)
and 'thin' (2-3 px curved bands), both written at the model size so the bands stay 2-3 px wide.
`--add-to JSON` adds this command's runs to a recorded study: its --render then gives the recorded
table unchanged and each added command's table under it.
"""

import argparse
import contextlib
import functools
import io
import json
import os
import pathlib
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf
import tf_keras

from iouseg import converters, demo_data
from trainer import augment, decode, encoder_weights, export, in_memory, iou, schedules, task
from trainer.config import TrainerConfig
from trainer.losses import LOSS_NAMES, LOSSES
from transform import data_format
from transform.config import TransformConfig

import report_table
import study_cli
import tf_env  # noqa: F401  (first: sets up TensorFlow)

SAMPLES = pathlib.Path(__file__).resolve().parents[1] / 'data' / 'samples'
BASELINE = 'cross_entropy'
# The rule for the default: how far below cross-entropy (mean paired eval mean IoU) a loss may be on
# any set, the issue's own tolerance for losing nothing (1 point).
RULE_TOLERANCE = 0.01
# Every loss of trainer/losses.py, and cross-entropy then the soft IoU (Berman et al.'s advice).
STUDY_LOSSES = tuple(LOSSES) + ('cross_entropy>soft_iou',)
CLASS_NAMES = {
  **{kind: names for kind, (_, names) in demo_data.KINDS.items()},
  'nuclei': ('background', 'nucleus'),
}
DATASETS = tuple(CLASS_NAMES)
# The sets added for issue 21 are written at the model size (--image-size): a 2-3 px band resized
# from the demo's 96 px would be thinner than that.
AT_MODEL_SIZE = ('lateral', 'thin')


def add_image_size_flag(parser) -> None:
  """--image-size, the model input size of the studies' runs."""
  parser.add_argument(
    '--image-size',
    type=int,
    default=64,
    help='model input size in pixels (nuclei tiles are 128) (default: %(default)s)',
  )


def prepare(dataset: str, workdir: str, image_size: int = 64):
  """(TransformConfig, train arrays, eval arrays) for a DATASETS name at `image_size`, and the eval
  records' file pattern."""
  root = os.path.join(workdir, dataset)
  if dataset in demo_data.KINDS:
    size = image_size if dataset in AT_MODEL_SIZE else 96
    demo_data.write_demo_data(root, size=size, kind=dataset)
    names = CLASS_NAMES[dataset]
    config = TransformConfig(
      image_size=image_size, channels=3, num_classes=len(names), class_names=','.join(names)
    )
  elif dataset == 'nuclei':
    converters.convert(SAMPLES / 'nuclei', root, num_classes=2, strict=True)
    # The 128x128 tiles at 64x64 by default: nuclei stay several pixels wide, and a step costs what
    # a demo step does.
    config = TransformConfig(image_size=image_size, channels=1, num_classes=2)
  else:
    raise ValueError(f'unknown dataset {dataset!r}')
  train, evaluation = in_memory.load_train_eval(f'{root}/train/*', f'{root}/eval/*', config)
  return (config, train, evaluation), f'{root}/eval/*'


def native_masks(file_pattern: str) -> list:
  """Each eval record's mask at its own size, decoded as the exported model decodes it."""
  spec = data_format.raw_feature_spec((data_format.MASK_ENCODED,))
  return [
    export.native_mask(
      tf.io.parse_single_example(serialized, spec)[data_format.MASK_ENCODED]
    ).numpy()
    for serialized in tf.data.TFRecordDataset(tf.io.gfile.glob(file_pattern))
  ]


def native_confusion(model, eval_images, masks, config: TransformConfig) -> np.ndarray:
  """The eval split's confusion matrix at native resolution: probabilities resized to each mask's
  size (`export.to_native_resolution`), decoded by the model's rule, ignore label left out."""
  probabilities = model.predict(eval_images, batch_size=16, verbose=0)
  matrix = np.zeros((config.num_classes, config.num_classes), np.int64)
  for probs, mask in zip(probabilities, masks):
    native = export.to_native_resolution(
      tf.constant(probs), mask.shape[0], mask.shape[1], config.image_size, config.resize
    ).numpy()
    matrix += iou.confusion_matrix(
      mask, decode.class_ids_np(native), mask != config.ignore_label, config.num_classes
    )
  return matrix


def train_batches(train, trainer_config: TrainerConfig, seed: int, batch_size: int):
  """The in-memory train arrays as the Trainer feeds them: shuffled by `seed`, repeated, batched,
  then augmented by the config's recipe (`trainer.augment`, as `trainer.data` applies it)."""
  return augment.augment_dataset(
    tf.data.Dataset.from_tensor_slices(train)
    .shuffle(len(train[0]), seed=seed)
    .repeat()
    .batch(batch_size),
    augment.AugmentOptions.from_config(trainer_config),
    seed,
  )


def train_to_convergence(trainer_config: TrainerConfig, seed: int, data, masks, args) -> dict:
  """One run of `trainer_config` (see the module docstring): native eval mean IoU, per-class IoU,
  un-augmented train mean IoU at model resolution, steps to the best evaluation, whether patience
  stopped it before --max-steps, seconds, and the validation mean IoU of every evaluation."""
  config, train, evaluation = data
  tf_keras.utils.set_random_seed(seed)
  evaluations = args.max_steps // args.eval_every
  model = task.compiled_model(trainer_config, total_steps=evaluations * args.eval_every)
  # The encoder from a weights file when the config names one (the transfer study), as the Trainer.
  encoder_weights.initialise(model, trainer_config.model, config.channels)
  dataset = train_batches(train, trainer_config, seed, args.batch_size)
  losses = trainer_config.losses
  switch = round(losses.loss_switch * evaluations) if '>' in losses.loss else 0
  stopping = tf_keras.callbacks.EarlyStopping(
    schedules.MONITOR, mode='max', patience=args.patience, start_from_epoch=switch
  )
  best = schedules.BestWeights()
  start = time.perf_counter()
  history = model.fit(
    dataset,
    steps_per_epoch=args.eval_every,
    epochs=evaluations,
    validation_data=evaluation,
    validation_batch_size=args.batch_size,
    callbacks=[best, stopping],
    verbose=0,
  )
  seconds = time.perf_counter() - start
  per_class = iou.per_class_iou(native_confusion(model, evaluation[0], masks, config))
  return {
    'seed': seed,
    'mean_iou': float(np.nanmean(per_class)),
    'per_class_iou': [float(v) for v in per_class],
    'train_mean_iou': model_resolution_mean_iou(model, train, config.num_classes),
    'best_step': (best.best_epoch + 1) * args.eval_every,
    'converged': bool(stopping.stopped_epoch),
    'seconds': seconds,
    'validation_curve': [round(float(v), 4) for v in history.history[schedules.MONITOR]],
  }


def model_resolution_mean_iou(model, arrays, num_classes: int) -> float:
  """Mean IoU at model resolution of `model` on in-memory (image, label, weight) arrays."""
  true_ids, valid = decode.labels_to_class_ids_np(arrays[1])
  predicted = decode.class_ids_np(model.predict(arrays[0], batch_size=16, verbose=0))
  return iou.mean_iou(iou.confusion_matrix(true_ids, predicted, valid, num_classes))


@functools.lru_cache(maxsize=2)  # a --jobs worker runs several cells of one data set
def load_in_process(dataset: str, threads: int, image_size: int = 64):
  """`prepare(dataset, image_size)` and the eval split's native masks, TensorFlow limited to `threads` CPU
  threads (0: all) in this process (a --jobs worker)."""
  if threads:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
  with tempfile.TemporaryDirectory() as workdir:
    data, eval_pattern = prepare(dataset, workdir, image_size)
    return data, native_masks(eval_pattern)


def run_cell(dataset: str, loss: str, seed: int, args) -> dict:
  """One loss and seed on one dataset, in this process with `args.threads` CPU threads."""
  data, masks = load_in_process(dataset, args.threads, args.image_size)
  trainer_config = TrainerConfig(data=data[0]).replace(loss=loss)
  run = {'loss': loss, **train_to_convergence(trainer_config, seed, data, masks, args)}
  print(f'{dataset} {run}', file=sys.stderr, flush=True)
  return {
    'dataset': dataset,
    'class_names': list(CLASS_NAMES[dataset]),
    'train_pixels_per_class': data[1][1].sum((0, 1, 2)).tolist(),
    'runs': [run],
  }


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


def _rarest_class(result: dict) -> int:
  """The class with the fewest train pixels."""
  return int(np.argmin(result['train_pixels_per_class']))


def paired_differences(
  result: dict, loss: str, metric=lambda run: run['mean_iou'], key='loss', baseline=BASELINE
) -> list:
  """metric(loss run) - metric(cross-entropy run) for each seed both ran; runs told apart by
  run[key], compared with run[key] == baseline."""
  by_seed = {(run[key], run['seed']): run for run in result['runs']}
  return [
    metric(by_seed[(loss, seed)]) - metric(by_seed[(baseline, seed)])
    for (name, seed) in by_seed
    if name == loss and (baseline, seed) in by_seed
  ]


def paired_cells(result: dict, name: str, key: str = 'loss', baseline: str = BASELINE) -> tuple:
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


def table(results: list, args) -> str:
  lines = report_table.header(
    'data | loss | eval mean IoU | − cross-entropy, paired | seeds ahead | rarest class IoU '
    '| steps to best | s / run'
  )
  for result, loss, runs in run_groups(results, 'loss'):
    rarest = _rarest_class(result)
    versus, ahead = paired_cells(result, loss)
    lines.append(
      f'| {result["dataset"]} | `{loss}` | {mean_spread([r["mean_iou"] for r in runs])} | '
      f'{versus} | {ahead} | '
      f'{mean_spread([r["per_class_iou"][rarest] for r in runs])} | {steps_cell(runs)} | '
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
    f'Each run: batch {args.batch_size}, {recipe_text(TrainerConfig())}, validation every '
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
    '--datasets', default='demo,nuclei', help=f'of {", ".join(DATASETS)} (default: %(default)s)'
  )
  parser.add_argument('--losses', default=','.join(STUDY_LOSSES), help='(default: %(default)s)')
  add_image_size_flag(parser)
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
  results = by_dataset(
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
      paired = paired_differences({'runs': found}, loss)
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
  unknown = sorted(set(args.datasets) - set(DATASETS)) + sorted(set(args.losses) - set(LOSS_NAMES))
  if unknown:
    sys.exit(
      f'loss_study.py: unknown {unknown}; data sets: {", ".join(DATASETS)}; '
      f'losses: {", ".join(LOSS_NAMES)}'
    )
  return study_cli.apply_run_settings(
    args, tasks=lambda settings: len(settings.datasets) * len(settings.losses) * len(settings.seeds)
  )


if __name__ == '__main__':
  sys.exit(main())
