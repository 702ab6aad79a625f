"""Does an encoder pretrained on a large set help on a small one? Self-made weights against random.

    nice -n 10 .venv/bin/python benchmarks/transfer_study.py --jobs 1 \
        --out benchmarks/results/transfer_study.md --json benchmarks/results/transfer_study.json
    .venv/bin/python benchmarks/transfer_study.py --quick     # CI-sized smoke run

No ImageNet weights can be downloaded on these machines, so the pretrained encoder is made here:
the `--encoder` U-Net (`trainer.task.compiled_model`, the Trainer's default recipe) is trained for
`--pretrain-steps` on `--pretrain-images` synthetic VOC-like photos (`voc_like.py`, 21 classes,
stretched to `--pretrain-size`), and its encoder saved as the Trainer exports it
(`assets.extra/encoder_weights.h5`, `trainer.encoder_weights.save`), the file `--encoder-weights`
takes. Then each small set is trained from that file (read and loaded by
`trainer.encoder_weights.initialise`, as the Trainer does) and from random weights: the same seed,
so the same decoder initialisation, data order and augmentation, the only difference being the
encoder's starting weights; paired seed by seed. The small sets, at their native size: the demo
set's first `--train-records` train records (written as a set of their own, so Transform's
statistics are theirs), evaluated on its 48 eval records; the nuclei tiles (1 channel: the 3-channel
stem summed, as `--channels 1` does). Each run as the loss study's (`convergence.train_batches`,
`BestWeights`, Keras `EarlyStopping` on validation mean IoU), scored as the Evaluator scores: eval
mean IoU at each image's native resolution (`convergence.native_confusion`).
"""

import argparse
import functools
import os
import sys
import tempfile
import time

import numpy as np
import tf_keras

from iouseg import demo_data
from trainer import encoder_weights, in_memory, task
from trainer.config import ENCODERS, TrainerConfig
from transform.config import TransformConfig

import convergence
import report_table
import study_cli
import study_table
import tf_env  # noqa: F401  (first: sets up TensorFlow)
import voc_like

BASELINE = 'random'
INITS = (BASELINE, 'pretrained')
# Each small set at its native size: the demo's 96 px images, the nuclei's 128 px tiles.
NATIVE_SIZE = {'demo': 96, 'nuclei': 128}
DATASETS = tuple(NATIVE_SIZE)
# The pretraining's VOC-like eval split, scored at model resolution to show what it learnt: this
# fraction of its train images.
PRETRAIN_EVAL_FRACTION = 20
# A fixed-length pretraining ends at a small learning rate (cosine to 0 over its steps); the
# fine-tuning runs keep the Trainer's defaults.
PRETRAIN_SCHEDULE = 'cosine'


def pretrain(args, folder: str) -> dict:
  """Trains the `args.encoder` U-Net on VOC-like images and saves its encoder under `folder`;
  the file's path, the VOC-like eval mean IoU at model resolution and the seconds it took."""
  config = TransformConfig(
    image_size=args.pretrain_size, channels=3, num_classes=voc_like.NUM_CLASSES
  )
  eval_images = max(8, args.pretrain_images // PRETRAIN_EVAL_FRACTION)
  voc_like.write(folder, args.pretrain_images, eval_images, seed=args.pretrain_seed)
  train, evaluation = in_memory.load_train_eval(f'{folder}/train/*', f'{folder}/eval/*', config)
  trainer_config = TrainerConfig(data=config).replace(
    encoder=args.encoder, lr_schedule=PRETRAIN_SCHEDULE, loss=args.loss
  )
  tf_keras.utils.set_random_seed(args.pretrain_seed)
  model = task.compiled_model(trainer_config, total_steps=args.pretrain_steps)
  start = time.perf_counter()
  model.fit(
    convergence.train_batches(train, trainer_config, args.pretrain_seed, args.batch_size),
    steps_per_epoch=args.pretrain_steps,
    epochs=1,
    verbose=0,
  )
  seconds = time.perf_counter() - start
  path = encoder_weights.save(model, folder)
  record = {
    'weights_file': os.path.relpath(path, folder),
    'images': args.pretrain_images,
    'image_size': args.pretrain_size,
    'steps': args.pretrain_steps,
    'eval_images': eval_images,
    'eval_mean_iou': convergence.model_resolution_mean_iou(model, evaluation, config.num_classes),
    'seconds': seconds,
  }
  print(f'pretraining {record}', file=sys.stderr, flush=True)
  return {**record, 'path': path}


@functools.lru_cache(maxsize=2)
def load(dataset: str, threads: int, train_records: int):
  """(TransformConfig, train arrays, eval arrays) of a DATASETS name at its native size, and the
  eval split's native masks; TensorFlow limited to `threads` in this process (0: all)."""
  if dataset == 'nuclei':
    return convergence.load_in_process(dataset, threads, NATIVE_SIZE[dataset])
  if threads:  # as convergence.load_in_process: before this process's first TensorFlow op
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
  with tempfile.TemporaryDirectory() as root:
    # The same seed's first `train_records` records of the 192; the eval split is the demo's own.
    demo_data.write_demo_data(root, train_count=train_records)
    names = demo_data.CLASS_NAMES
    config = TransformConfig(
      image_size=NATIVE_SIZE[dataset],
      channels=3,
      num_classes=len(names),
      class_names=','.join(names),
    )
    train, evaluation = in_memory.load_train_eval(f'{root}/train/*', f'{root}/eval/*', config)
    return (config, train, evaluation), convergence.native_masks(f'{root}/eval/*')


# What each data set is scored on.
EVAL_SPLITS = {'demo': 'demo: its 48 eval records', 'nuclei': 'nuclei: its 4 eval tiles'}


def run_cell(dataset: str, init: str, seed: int, args) -> dict:
  """One data set, init and seed, in this process with `args.threads` CPU threads."""
  data, masks = load(dataset, args.threads, args.train_records)
  trainer_config = TrainerConfig(data=data[0]).replace(
    encoder=args.encoder,
    encoder_weights=args.weights_path if init == 'pretrained' else '',
    loss=args.loss,
  )
  run = {'init': init, **convergence.train_to_convergence(trainer_config, seed, data, masks, args)}
  print(f'{dataset} {run}', file=sys.stderr, flush=True)
  return {
    'dataset': dataset,
    'class_names': list(convergence.CLASS_NAMES[dataset]),
    'train_records': len(data[1][0]),
    'runs': [run],
  }


def table(results: dict, args) -> list:
  pretraining, found = results['pretraining'], results['datasets']
  lines = report_table.header(
    'data | train records | encoder init | eval mean IoU | − random init, paired | seeds ahead '
    '| steps to best | s / run'
  )
  for result, init, runs in study_table.run_groups(found, 'init'):
    versus, ahead = study_table.paired_cells(result, init, key='init', baseline=BASELINE)
    lines.append(
      f'| {result["dataset"]} | {result["train_records"]} | {init} | '
      f'{study_table.mean_spread([r["mean_iou"] for r in runs])} | {versus} | {ahead} | '
      f'{study_table.steps_cell(runs)} | {np.mean([r["seconds"] for r in runs]):.0f} |'
    )
  lines += ['', *target_lines(found, args), '']
  lines.append(
    f'Encoder {args.encoder} under the U-Net decoder. "pretrained": its encoder from the weights '
    f'file this command made by training the whole network for {pretraining["steps"]} steps '
    f'(batch {args.batch_size}, {PRETRAIN_SCHEDULE} lr) on {pretraining["images"]} synthetic '
    f'VOC-like images at {pretraining["image_size"]} px ({pretraining["seconds"]:.0f} s; '
    f'{pretraining["eval_images"]} VOC-like eval images: mean IoU {pretraining["eval_mean_iou"]:.3f} at '
    'model resolution); "random": the same encoder from random weights. The decoder starts from '
    f"the seed's random weights in both. Every run (pretraining too) with `--loss {args.loss}`. "
    f'Each run: batch {args.batch_size}, '
    f'{study_table.recipe_text(TrainerConfig())}, validation every {args.eval_every} steps, '
    f'stopped after {args.patience} without a better validation mean IoU (or at {args.max_steps} '
    'steps: "capped"), best validation weights kept; seeds '
    f'{", ".join(map(str, args.seeds))}. Eval mean IoU at native resolution ('
    + '; '.join(EVAL_SPLITS[name] for name in args.datasets)
    + '); mean ± half-range over seeds; paired: the same '
    f"seed's random-init run subtracted. Seconds on {args.threads or os.cpu_count()} CPU "
    f'thread(s) per run, {args.jobs} run(s) at a time, on a shared machine. ImageNet-initialised '
    'figures are not measured here: these machines cannot download ImageNet weights.'
  )
  return lines


def target_lines(found: list, args) -> list:
  """Whether the pretrained encoder beat random init by >= `args.target` on every seed."""
  lines = []
  for result in found:
    paired = study_table.paired_differences(result, 'pretrained', key='init', baseline=BASELINE)
    if not paired:
      continue
    met = sum(d >= args.target for d in paired)
    lines.append(
      f'{result["dataset"]}: pretrained − random {", ".join(f"{d:+.3f}" for d in paired)} '
      f'(seeds {", ".join(map(str, args.seeds))}); >= {args.target:.2f} on {met}/{len(paired)} '
      f'seeds: target {"met" if met == len(paired) else "missed"}.'
    )
  return lines


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument(
    '--datasets', default='demo', help=f'of {", ".join(DATASETS)} (default: %(default)s)'
  )
  study_cli.add_loss_flag(parser, 'every run, pretraining too')
  parser.add_argument(
    '--encoder', default='mobilenet_v2', choices=ENCODERS[1:], help='(default: %(default)s)'
  )
  parser.add_argument(
    '--train-records',
    type=int,
    default=24,
    help="the demo set's first this many train records (default: %(default)s)",
  )
  parser.add_argument('--pretrain-images', type=int, default=2000, help='(default: %(default)s)')
  parser.add_argument('--pretrain-size', type=int, default=96, help='(default: %(default)s)')
  parser.add_argument('--pretrain-steps', type=int, default=500, help='(default: %(default)s)')
  parser.add_argument('--pretrain-seed', type=int, default=0, help='(default: %(default)s)')
  parser.add_argument(
    '--target', type=float, default=0.05, help='the gain to beat on every seed (default: 0.05)'
  )
  study_cli.add_run_flags(
    parser,
    max_steps=600,
    jobs_help='fine-tuning runs (data set, init, seed) at once, in separate processes',
    json_help='also write the pretraining and every run (per-class IoU, curve, steps) here',
  )
  args = parser.parse_args(argv)
  if args.render:
    return study_cli.render(args.render, parser, _settings, table, args.out, 'transfer_study.py')
  args = _settings(args)
  with tempfile.TemporaryDirectory() as folder:
    pretraining = pretrain(args, folder)
    args.weights_path = pretraining.pop('path')
    cells = [(d, init, seed) for d in args.datasets for seed in args.seeds for init in INITS]
    runs = study_cli.map_in_processes(run_cell, args.jobs, *zip(*cells), [args] * len(cells))
  results = {'pretraining': pretraining, 'datasets': study_table.by_dataset(runs)}
  return study_cli.publish(
    results, lambda: table(results, args), args.json, args.out, 'transfer_study.py'
  )


def _settings(args):
  """Parsed flags -> the study's settings (--quick: a small pretraining too)."""
  args.datasets = args.datasets.split(',')
  unknown = sorted(set(args.datasets) - set(DATASETS))
  if unknown:
    sys.exit(f'transfer_study.py: unknown data sets {unknown}; of {", ".join(DATASETS)}')
  if args.quick:
    args.pretrain_images, args.pretrain_steps = 32, 10
  return study_cli.apply_run_settings(
    args, tasks=lambda settings: len(settings.datasets) * len(INITS) * len(settings.seeds)
  )


if __name__ == '__main__':
  sys.exit(main())
