"""Memory benchmark: peak resident memory of the demo pipeline and of each Beam stage at 1x and 4x data.

    .venv/bin/python benchmarks/memory.py [--scales 1,4]

Runs `benchmarks/whole_run.py`'s measurement (the demo pipeline from scratch, memory of the process
tree sampled every 0.1 s) at each scale of the demo set. For each component: its peak, and its
growth (the peak minus the memory when it started: what the component itself holds, as everything
runs in one process). A streaming stage's growth stays flat as the data grows; one that holds its
data in memory grows with it. The Trainer's steps do not depend on the data size.
"""

import argparse
import sys

import report_table
import whole_run

BEAM_STAGES = ('ImportExampleGen', 'RecordValidator', 'StatisticsGen', 'Transform', 'Evaluator')


def growth_mib(run: whole_run.WholeRun, node: str) -> float:
  start, end = run.spans[node]
  before = [rss for t, rss in run.memory if t <= start]
  baseline = before[-1] if before else min(rss for _, rss in run.memory)
  return run.peak_mib(start, end) - baseline / 2**20


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--scales', default='1,4', help='comma-separated (default: %(default)s)')
  parser.add_argument('--out', help='also write the markdown here')
  args = parser.parse_args(argv)
  scales = [int(s) for s in args.scales.split(',')]
  runs = {scale: whole_run.run_demo(scale) for scale in scales}

  header = ' | '.join(f'peak {s}x | growth {s}x' for s in scales)
  lines = [f'| component | {header} |', '| --- |' + ' --- |' * (2 * len(scales))]
  for node in BEAM_STAGES + ('Trainer',):
    cells = ' | '.join(
      f'{runs[s].peak_mib(*runs[s].spans[node]):.0f} | {growth_mib(runs[s], node):.0f}'
      for s in scales
    )
    lines.append(f'| {node}{"" if node in BEAM_STAGES else " (not Beam)"} | {cells} |')
  lines.append(
    '| **whole run** | ' + ' | '.join(f'**{runs[s].peak_mib():.0f}** | ' for s in scales) + ' |'
  )
  first, last = scales[0], scales[-1]
  lines += [
    '',
    f'MiB of resident memory (the run and its child processes). Whole-run peak '
    f'{last}x / {first}x = {runs[last].peak_mib() / runs[first].peak_mib():.2f}. Data: '
    + ', '.join(
      f'{s}x = {whole_run.DEMO_TRAIN * s} train + {whole_run.DEMO_EVAL * s} '
      f'eval records ({runs[s].wall:.0f} s)'
      for s in scales
    )
    + '.',
  ]
  return report_table.publish(lines, args.out, 'memory.py')


if __name__ == '__main__':
  sys.exit(main())
