"""Scale benchmark: does the pipeline's cost grow with the data and no faster? The whole pipeline on
a synthetic PASCAL-VOC-like set, per component, against three ratios.

    .venv/bin/python benchmarks/scale.py [--train 2000 --eval 200] [--small-train 200 --small-eval 20]
        [--image-size 512 --num-classes 21 --batch-size 4 --train-steps 4] [--out benchmarks/results/scale.md]

Writes `benchmarks/voc_like.py`'s set (512x384 JPEGs, PNG masks, 21 classes, void band) at two sizes
in a temporary folder and runs `iouseg run` on each from scratch (`benchmarks/whole_run.py`'s
measurement: a subprocess, its process tree's resident memory sampled every 0.1 s, each component's
span read from ML Metadata) with few Trainer steps, so the data-dependent stages dominate. Per
component: seconds, peak memory inside its span and the bytes under its output artifacts' URIs
(from ML Metadata). Then the ratios and their targets:

  - bytes written after the RecordValidator / bytes of the input records  <= 2
  - whole-run peak memory / peak of the same model and batch trained on in-memory tensors  <= 1.3
    (the "limit": a subprocess that trains `trainer.task.compiled_model` on random tensors of the
    pipeline's shapes for the same steps, its memory sampled the same way)
  - whole-run peak memory at --train records / at --small-train records  <= 1.1
"""

import argparse
import glob
import math
import os
import statistics
import sys
import tempfile
import time

from iouseg import mlmd_store

import report_table
import tf_env  # noqa: F401  (first: sets up TensorFlow)
import voc_like
import whole_run

BYTES_TARGET = 2.0  # bytes written after the RecordValidator / input bytes
LIMIT_TARGET = 1.3  # whole-run peak / in-memory training peak
GROWTH_TARGET = 1.1  # whole-run peak at --train / at --small-train records
LIMIT_RUNS = 3  # in-memory limit runs; the median is the limit
PIPELINE = 'iouseg'
# Outputs that are not written by the node: the Resolver hands on an existing model.
NOT_WRITTEN = ('latest_blessed_model_resolver',)
BEFORE_TRANSFORM = ('ImportExampleGen', 'RecordValidator')


def tree_bytes(uri: str) -> int:
  """Bytes of the file, or of every file under the folder, at `uri`."""
  if os.path.isfile(uri):
    return os.path.getsize(uri)
  return sum(
    os.path.getsize(os.path.join(folder, name))
    for folder, _, names in os.walk(uri)
    for name in names
  )


def written_bytes(run: whole_run.WholeRun) -> dict:
  """{node id: bytes under the URIs of its output artifacts} of the run's latest execution."""
  written = {}
  for node in run.spans:
    if node in NOT_WRITTEN:
      continue
    outputs = mlmd_store.latest_outputs(run.paths['metadata'], PIPELINE, node)
    written[node] = sum(tree_bytes(a.uri) for found in outputs.values() for a in found)
  return written


def pipeline_run(data_root: str, work: str, args) -> whole_run.WholeRun:
  """`iouseg run` on `data_root`, few steps, no blessing floor; on failure, the log's tail."""
  flags = [
    '--image-size',
    str(args.image_size),
    '--num-classes',
    str(args.num_classes),
    '--train-steps',
    str(args.train_steps),
    '--epochs',
    '1',
    '--eval-steps',
    '1',
    '--batch-size',
    str(args.batch_size),
    '--min-mean-iou',
    '0',
  ]
  os.makedirs(work)
  try:
    return whole_run.run_demo(run_flags=flags, data_root=data_root, work=work, demo_flags=())
  except RuntimeError:
    for log in sorted(glob.glob(f'{work}/root/logs/*.log'))[-1:]:
      with open(log, encoding='utf-8', errors='replace') as f:
        sys.stderr.write(f'--- last lines of {log}\n' + ''.join(f.readlines()[-40:]))
    raise


def in_memory_limit(args) -> tuple:
  """(median peak MiB, median seconds, the peaks) of LIMIT_RUNS subprocesses training the same
  model and batch on in-memory tensors, each sampled like the pipeline run: one run's peak moves by
  100-250 MiB from run to run (allocator and thread timing), as much as the gap it is held to."""
  command = [
    sys.executable,
    os.path.abspath(__file__),
    '--in-memory-child',
    '--image-size',
    str(args.image_size),
    '--num-classes',
    str(args.num_classes),
    '--batch-size',
    str(args.batch_size),
    '--train-steps',
    str(args.train_steps),
  ]
  peaks, walls = [], []
  for _ in range(LIMIT_RUNS):
    returncode, wall, samples = whole_run.run_sampled(
      command, {**os.environ, 'TF_USE_LEGACY_KERAS': '1'}
    )
    if returncode:
      raise RuntimeError(f'the in-memory training subprocess failed with exit status {returncode}')
    peaks.append(max(rss for _, rss in samples) / 2**20)
    walls.append(wall)
  return statistics.median(peaks), statistics.median(walls), sorted(peaks)


def in_memory_child(args) -> int:
  """The limit's subprocess: `compiled_model` trained `--train-steps` steps on one random batch."""
  import tensorflow as tf

  from trainer import task
  from trainer.config import TrainerConfig

  import precision

  config = TrainerConfig.from_flat(
    image_size=args.image_size, num_classes=args.num_classes, batch_size=args.batch_size
  )
  model = task.compiled_model(config)
  dataset = tf.data.Dataset.from_tensors(precision.random_batch(config)).repeat()
  model.fit(dataset, epochs=1, steps_per_epoch=max(2, args.train_steps), verbose=0)
  return 0


def _mib(value: float) -> str:
  return '-' if math.isnan(value) else f'{value:.0f}'


def _mb(value) -> str:
  return '' if value is None else f'{value / 1e6:.1f}'


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument(
    '--train', type=int, default=2000, help='train records (default: %(default)s)'
  )
  parser.add_argument('--eval', type=int, default=200, help='eval records (default: %(default)s)')
  parser.add_argument(
    '--small-train',
    type=int,
    default=200,
    help='train records of the second, smaller run (default: %(default)s)',
  )
  parser.add_argument(
    '--small-eval',
    type=int,
    default=20,
    help='eval records of the smaller run (default: %(default)s)',
  )
  parser.add_argument('--image-size', type=int, default=512, help='(default: %(default)s)')
  parser.add_argument(
    '--num-classes', type=int, default=voc_like.NUM_CLASSES, help='(default: %(default)s)'
  )
  parser.add_argument('--batch-size', type=int, default=4, help='(default: %(default)s)')
  parser.add_argument('--train-steps', type=int, default=4, help='(default: %(default)s)')
  parser.add_argument('--out', help='also write the markdown here')
  parser.add_argument('--in-memory-child', action='store_true', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.in_memory_child:
    return in_memory_child(args)

  start = time.perf_counter()
  sizes = {'large': (args.train, args.eval), 'small': (args.small_train, args.small_eval)}
  runs, written, input_bytes, generate_s = {}, {}, {}, {}
  with tempfile.TemporaryDirectory(prefix='scale_') as work:
    for name, (train, eval_count) in sizes.items():
      data = f'{work}/{name}/data'
      began = time.perf_counter()
      input_bytes[name] = sum(voc_like.write(data, train, eval_count).values())
      generate_s[name] = time.perf_counter() - began
      runs[name] = pipeline_run(data, f'{work}/{name}/run', args)
      written[name] = written_bytes(runs[name])
  limit_mib, limit_s, limit_peaks = in_memory_limit(args)
  total_s = time.perf_counter() - start

  large, small = runs['large'], runs['small']
  head = (f'{args.train} train + {args.eval} eval', f'{args.small_train} + {args.small_eval}')
  lines = [
    f'| component | seconds ({head[0]}) | peak MiB | MB written | '
    f'seconds ({head[1]}) | peak MiB | MB written |',
    '| --- | --- | --- | --- | --- | --- | --- |',
  ]
  for node in large.spans:
    cells = []
    for name, run in runs.items():
      if node in run.spans:
        span = run.spans[node]
        cells += [
          f'{span[1] - span[0]:.1f}',
          _mib(run.peak_mib(*span)),
          _mb(written[name].get(node)),
        ]
      else:
        cells += ['', '', '']
    lines.append(f'| {node} | ' + ' | '.join(cells) + ' |')
  outside = [run.wall - sum(e - s for s, e in run.spans.values()) for run in (large, small)]
  lines.append(
    f'| outside components (start-up, imports, launcher, metadata) | {outside[0]:.1f} '
    f'| | | {outside[1]:.1f} | | |'
  )
  lines.append(
    f'| **whole run** | **{large.wall:.1f}** | **{large.peak_mib():.0f}** | '
    f'**{_mb(sum(written["large"].values()))}** | **{small.wall:.1f}** | '
    f'**{small.peak_mib():.0f}** | **{_mb(sum(written["small"].values()))}** |'
  )
  lines.append(
    f'| input records (train + eval TFRecords) | | | {_mb(input_bytes["large"])} | | | '
    f'{_mb(input_bytes["small"])} |'
  )

  def after_validator(name):
    nodes = list(runs[name].spans)
    later = nodes[nodes.index('RecordValidator') + 1 :]
    return sum(written[name].get(node, 0) for node in later)

  def ratio_row(label, value, target=None):
    verdict = '' if target is None else ('met' if value <= target else 'missed')
    return (
      f'| {label} | {value:.3g} | ' + ('' if target is None else f'<= {target}') + f' | {verdict} |'
    )

  by_input = {name: lambda node, n=name: written[n].get(node, 0) / input_bytes[n] for name in runs}
  lines += [
    '',
    '| ratio | measured | target | |',
    '| --- | --- | --- | --- |',
    ratio_row(
      'bytes written after the RecordValidator (every later component) / input bytes',
      after_validator('large') / input_bytes['large'],
      BYTES_TARGET,
    ),
    ratio_row(
      '  of which Transform (its transform graph) / input bytes', by_input['large']('Transform')
    ),
    ratio_row(
      '  of which Trainer + Pusher (the model and its pushed copy) / input bytes',
      by_input['large']('Trainer') + by_input['large']('Pusher'),
    ),
    ratio_row(
      "RecordValidator's own output (its valid copy of the records) / input bytes",
      by_input['large']('RecordValidator'),
    ),
    ratio_row(
      "ImportExampleGen's output (its copy of the records) / input bytes",
      by_input['large']('ImportExampleGen'),
    ),
    ratio_row(
      f'whole-run peak memory / in-memory training peak ({limit_mib:.0f} MiB)',
      large.peak_mib() / limit_mib,
      LIMIT_TARGET,
    ),
    ratio_row(
      f'whole-run peak memory at {args.train} / at {args.small_train} train records',
      large.peak_mib() / small.peak_mib(),
      GROWTH_TARGET,
    ),
  ]
  growth = {
    node: large.peak_mib(*large.spans[node]) - small.peak_mib(*small.spans[node])
    for node in large.spans
    if node in small.spans
  }
  growth = {node: g for node, g in growth.items() if not math.isnan(g)}
  grows = max(growth, key=growth.get) if growth else None
  slowest = max(large.spans, key=lambda n: large.spans[n][1] - large.spans[n][0])
  lines += [
    '',
    f'Batch {args.batch_size}, {args.train_steps} train steps (1 epoch), 1 eval step, '
    f'{args.image_size} px, {args.num_classes} classes, `--min-mean-iou 0`. Eval mean IoU '
    f'{large.mean_iou:.3f} ({head[0]}) and {small.mean_iou:.3f} ({head[1]}): meaningless '
    f'after {args.train_steps} steps, printed only to show the Evaluator ran. '
    f"{whole_run.MEMORY_NOTE} A component's peak is the highest sample inside its "
    'MLMD span (- where the span is shorter than a sample). MB written: 10^6 bytes under '
    "the URIs of the node's output artifacts in ML Metadata. In-memory limit: "
    f'`trainer.task.compiled_model` of the same settings trained {max(2, args.train_steps)} '
    f'steps on one random batch held in memory, the median of {LIMIT_RUNS} subprocesses '
    f'(peaks {", ".join(f"{peak:.0f}" for peak in limit_peaks)} MiB; {limit_s:.0f} s each). '
    f'Slowest component: {slowest}'
    + (
      f'; largest peak growth {head[1]} -> {head[0]}: {grows} (+{growth[grows]:.0f} MiB)'
      if grows
      else ''
    )
    + f'. Data generation {generate_s["large"]:.0f} s + {generate_s["small"]:.0f} s; the '
    f'benchmark took {total_s:.0f} s in all.',
  ]
  return report_table.publish(lines, args.out, 'scale.py')


if __name__ == '__main__':
  sys.exit(main())
