"""Whole-run benchmark: `make demo`'s pipeline from scratch, timed per component from ML Metadata.

    .venv/bin/python benchmarks/whole_run.py [--scale 1] [--out benchmarks/results/whole_run.md] [-- extra iouseg run flags]

Runs `iouseg demo-data` and `iouseg run` (the demo's flags) in a fresh folder as a subprocess, then
reads each component's execution time span from MLMD. While it runs, the resident memory of the
process and all its children (Beam workers included) is sampled every 0.1 s; each component's peak
is the highest sample inside its span. Prints a markdown table: seconds per component, their share
of the wall time, the share outside component work (process start-up and imports, launcher,
metadata, Beam start-up), peak memory, and the eval mean IoU against the targets (<= 180 s, mean
IoU >= 0.8). `--scale` multiplies the demo set's record counts (benchmarks/memory.py runs 1 and 4).
"""

import argparse
import contextlib
import dataclasses
import os
import subprocess
import sys
import tempfile
import threading
import time

import psutil

from iouseg import mlmd_store, run_summary

import report_table

WALL_TARGET_S = 180.0
MEAN_IOU_TARGET = 0.8
DEMO_FLAGS = ['--class-names', 'background,disc,square,triangle']
DEMO_TRAIN, DEMO_EVAL = 192, 48
SAMPLE_EVERY_S = 0.1
# How the benchmarks that sample a run's memory (`run_sampled`) say what they measured.
MEMORY_NOTE = (
  f'Memory: resident set of the run and its child processes, sampled every {SAMPLE_EVERY_S} s.'
)


@dataclasses.dataclass
class WholeRun:
  wall: float
  spans: dict  # node id -> (start, end) seconds since the epoch
  memory: list  # (seconds since the epoch, resident bytes of the process tree)
  mean_iou: float
  paths: dict = dataclasses.field(
    default_factory=dict
  )  # data, root, serving, metadata (see run_demo)

  def peak_mib(self, start: float = 0.0, end: float = float('inf')) -> float:
    inside = [rss for t, rss in self.memory if start <= t <= end]
    return max(inside, default=float('nan')) / 2**20


def _tree_rss(process: psutil.Process) -> int:
  total = 0
  for p in [process] + process.children(recursive=True):
    try:
      total += p.memory_info().rss
    except psutil.NoSuchProcess:
      pass  # a Beam worker that ended between listing and reading
  return total


def _sample(process: psutil.Process, samples: list, done: threading.Event) -> None:
  while not done.wait(SAMPLE_EVERY_S):
    try:
      samples.append((time.time(), _tree_rss(process)))
    except psutil.NoSuchProcess:
      return


def run_sampled(command, env) -> tuple:
  """(exit status, wall seconds, memory samples) of `command` run as a subprocess, its output
  discarded, the resident memory of its process tree sampled every SAMPLE_EVERY_S."""
  samples, done = [], threading.Event()
  start = time.perf_counter()
  process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  sampler = threading.Thread(target=_sample, args=(psutil.Process(process.pid), samples, done))
  sampler.start()
  returncode = process.wait()
  wall = time.perf_counter() - start
  done.set()
  sampler.join()
  return returncode, wall, samples


def run_demo(
  scale: int = 1, run_flags=(), data_root=None, work=None, demo_flags=DEMO_FLAGS
) -> WholeRun:
  """The demo pipeline on `scale` times the demo set, from scratch, in a temporary folder.

  `data_root`: run on these records (train/ and eval/ folders) instead of writing the demo set;
  `demo_flags` (the demo's class names) are then usually replaced, e.g. by (). `work`: run in this
  folder and keep it, so that the run's files (`WholeRun.paths`) can be read afterwards.
  """
  iouseg = [sys.executable, '-m', 'iouseg.cli']
  env = {**os.environ, 'TF_USE_LEGACY_KERAS': '1'}
  with contextlib.nullcontext(work) if work else tempfile.TemporaryDirectory() as work:
    paths = {
      'data': data_root or f'{work}/data',
      'root': f'{work}/root',
      'serving': f'{work}/serving',
      'metadata': f'{work}/metadata.sqlite',
    }
    if not data_root:
      subprocess.run(
        iouseg
        + [
          'demo-data',
          '--output',
          paths['data'],
          '--train-count',
          str(DEMO_TRAIN * scale),
          '--eval-count',
          str(DEMO_EVAL * scale),
        ],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
      )
    returncode, wall, samples = run_sampled(
      iouseg
      + [
        'run',
        '--data-root',
        paths['data'],
        '--pipeline-root',
        paths['root'],
        '--serving-dir',
        paths['serving'],
        '--metadata',
        paths['metadata'],
      ]
      + list(demo_flags)
      + list(run_flags),
      env,
    )
    if returncode:
      raise RuntimeError(f'iouseg run failed with exit status {returncode}')
    summary = run_summary.latest_run(paths['metadata'], 'iouseg')
    return WholeRun(
      wall,
      mlmd_store.component_spans(paths['metadata'], 'iouseg'),
      samples,
      summary.candidate_metrics.get('mean_iou', float('nan')),
      paths,
    )


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--scale', type=int, default=1, help='times the demo set (default: 1)')
  parser.add_argument('--out', help='also write the markdown here')
  parser.add_argument('run_flags', nargs='*', help='extra `iouseg run` flags (after --)')
  args = parser.parse_args(argv)
  run = run_demo(args.scale, args.run_flags)

  lines = [
    '| component | seconds | share of wall time | peak memory (MiB) |',
    '| --- | --- | --- | --- |',
  ]
  seconds = {node: end - start for node, (start, end) in run.spans.items()}
  # A component shorter than the sampling interval has no sample of its own: '-'.
  lines += [
    f'| {node} | {seconds[node]:.1f} | {seconds[node] / run.wall:.0%} | '
    f'{run.peak_mib(*run.spans[node]):.0f} |'.replace('| nan |', '| - |')
    for node in run.spans
  ]
  outside = run.wall - sum(seconds.values())
  lines.append(
    f'| outside components (start-up, imports, launcher, metadata) | {outside:.1f} | '
    f'{outside / run.wall:.0%} | |'
  )
  lines.append(f'| **whole run** | **{run.wall:.1f}** | 100% | {run.peak_mib():.0f} |')
  lines += [
    '',
    f'Wall time {run.wall:.0f} s against a target of {WALL_TARGET_S:.0f} s '
    f'(ratio {run.wall / WALL_TARGET_S:.2f}); eval mean IoU {run.mean_iou:.3f} against '
    f'{MEAN_IOU_TARGET} (ratio {run.mean_iou / MEAN_IOU_TARGET:.2f}). Data: '
    f'{DEMO_TRAIN * args.scale} train + {DEMO_EVAL * args.scale} eval records. {MEMORY_NOTE}',
  ]
  return report_table.publish(lines, args.out, 'whole_run.py')


if __name__ == '__main__':
  sys.exit(main())
