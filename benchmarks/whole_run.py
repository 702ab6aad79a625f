"""Whole-run benchmark: `make demo`'s pipeline from scratch, timed per component from ML Metadata.

    python benchmarks/whole_run.py [--out benchmarks/results/whole_run.md] [-- extra iouseg run flags]

Runs `iouseg demo-data` and `iouseg run` (the demo's flags) in a fresh folder as a subprocess, then
reads each component's execution time span from MLMD. Prints a markdown table: seconds per
component, their share of the wall time, the share outside component work (process start-up and
imports, launcher, metadata, Beam start-up), peak resident memory, and the eval mean IoU against the
targets (<= 180 s, mean IoU >= 0.8).
"""
import argparse
import os
import pathlib
import platform
import resource
import subprocess
import sys
import tempfile
import time

from iouseg import run_summary

WALL_TARGET_S = 180.0
MEAN_IOU_TARGET = 0.8
DEMO_FLAGS = ['--class-names', 'background,disc,square,triangle']


def component_seconds(metadata_path: str, pipeline_name: str) -> dict:
  """{node id: seconds from execution creation to its last update} for the latest run."""
  store = run_summary.open_store(metadata_path)
  summary = run_summary.latest_run(metadata_path, pipeline_name)
  run = [c for c in store.get_contexts_by_type('pipeline_run') if c.name == summary.run_id][0]
  seconds = {}
  for execution in store.get_executions_by_context(run.id):
    node = run_summary.node_id(store, execution)
    seconds[node] = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1e3
  return seconds


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--out', help='also write the markdown here')
  parser.add_argument('run_flags', nargs='*', help='extra `iouseg run` flags (after --)')
  args = parser.parse_args(argv)
  iouseg = [sys.executable, '-m', 'iouseg.cli']
  env = {**os.environ, 'TF_USE_LEGACY_KERAS': '1'}
  with tempfile.TemporaryDirectory() as work:
    paths = {'data': f'{work}/data', 'root': f'{work}/root', 'serving': f'{work}/serving',
             'metadata': f'{work}/metadata.sqlite'}
    subprocess.run(iouseg + ['demo-data', '--output', paths['data']], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    start = time.perf_counter()
    subprocess.run(iouseg + ['run', '--data-root', paths['data'], '--pipeline-root', paths['root'],
                             '--serving-dir', paths['serving'], '--metadata', paths['metadata']]
                   + DEMO_FLAGS + args.run_flags, check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    seconds = component_seconds(paths['metadata'], 'iouseg')
    summary = run_summary.latest_run(paths['metadata'], 'iouseg')

  lines = ['| component | seconds | share of wall time |', '| --- | --- | --- |']
  lines += [f'| {node} | {s:.1f} | {s / wall:.0%} |' for node, s in seconds.items()]
  outside = wall - sum(seconds.values())
  lines.append(f'| outside components (start-up, imports, launcher, metadata) | {outside:.1f} | '
               f'{outside / wall:.0%} |')
  lines.append(f'| **whole run** | **{wall:.1f}** | 100% |')
  mean_iou = summary.candidate_metrics.get('mean_iou', float('nan'))
  lines += ['', f'Wall time {wall:.0f} s against a target of {WALL_TARGET_S:.0f} s '
            f'(ratio {wall / WALL_TARGET_S:.2f}); eval mean IoU {mean_iou:.3f} against '
            f'{MEAN_IOU_TARGET} (ratio {mean_iou / MEAN_IOU_TARGET:.2f}); peak resident memory of '
            f'one process {peak_mib:.0f} MiB.',
            f'Machine: {platform.machine()}, {os.cpu_count()} CPU cores. Command: '
            f'`python benchmarks/whole_run.py {" ".join(sys.argv[1:])}`'.rstrip()]
  markdown = '\n'.join(lines)
  print(markdown)
  if args.out:
    pathlib.Path(args.out).write_text(markdown + '\n')
  return 0


if __name__ == '__main__':
  sys.exit(main())
