"""Memory timeline: where inside the Trainer and the Evaluator the whole-run peak happens.

    .venv/bin/python benchmarks/memory_timeline.py [--train 200 --eval 20] [--every-s 10]
        [--image-size 512 --num-classes 21 --batch-size 4 --train-steps 4] [--out FILE]

`benchmarks/scale.py`'s run (its VOC-like set, its flags, its sampling of the process tree's
resident memory every 0.1 s) at one size, then the samples from the Trainer's start to the
Evaluator's end: the highest in each `--every-s` window, beside the Trainer's own log lines (cold
start, best-weights restore, export tracing) at their times. The scale benchmark gives one peak per
component; this says which phase of the component sets it.
"""

import argparse
import datetime
import glob
import sys
import tempfile

import report_table
import scale
import voc_like
import whole_run

# Trainer log lines that mark its phases (trainer/task.py, trainer/continuation.py, schedules.py).
PHASES = ('Cold start', 'Warm start', 'Keeping the weights', 'Tracing the serving', 'Traced ')


def log_events(log_path: str, start: float, end: float) -> list:
  """(seconds since the epoch, message) of the phase lines logged between `start` and `end`."""
  events = []
  with open(log_path, encoding='utf-8', errors='replace') as log:
    for line in log:
      try:
        stamp = datetime.datetime.strptime(line[:23], '%Y-%m-%d %H:%M:%S,%f').timestamp()
      except ValueError:
        continue  # a continuation line of a multi-line message
      message = line.split('] ', 1)[-1].strip()
      if start <= stamp <= end and message.startswith(PHASES):
        events.append((stamp, message[:100]))
  return events


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--train', type=int, default=200, help='train records (default: %(default)s)')
  parser.add_argument('--eval', type=int, default=20, help='eval records (default: %(default)s)')
  parser.add_argument('--every-s', type=float, default=10.0, help='window (default: %(default)s)')
  parser.add_argument('--image-size', type=int, default=512)
  parser.add_argument('--num-classes', type=int, default=voc_like.NUM_CLASSES)
  parser.add_argument('--batch-size', type=int, default=4)
  parser.add_argument('--train-steps', type=int, default=4)
  parser.add_argument('--out', help='also write the markdown here')
  args = parser.parse_args(argv)

  with tempfile.TemporaryDirectory(prefix='memory_timeline_') as work:
    voc_like.write(f'{work}/data', args.train, args.eval)
    run = scale.pipeline_run(f'{work}/data', f'{work}/run', args)
    start, end = run.spans['Trainer'][0], run.spans['Evaluator'][1]
    log = sorted(glob.glob(f'{work}/run/root/logs/*.log'))[-1]
    events = log_events(log, start, end)

  lines = report_table.header('component | span (s from the Trainer start) | peak MiB')
  for node in ('Transform', 'Trainer', 'Evaluator'):
    node_start, node_end = run.spans[node]
    lines.append(
      f'| {node} | {node_start - start:.0f} to {node_end - start:.0f} | '
      f'{run.peak_mib(node_start, node_end):.0f} |'
    )
  lines += [''] + report_table.header('window (s from the Trainer start) | peak MiB | logged')
  window = args.every_s
  t = start
  while t < end:
    logged = '; '.join(f'{s - start:.0f} s {m}' for s, m in events if t <= s < t + window)
    lines.append(
      f'| {t - start:.0f} to {t - start + window:.0f} | {run.peak_mib(t, min(t + window, end)):.0f} | '
      f'{logged} |'.replace('| nan |', '| - |')
    )
    t += window
  lines += [
    '',
    f'Before the Trainer: {run.peak_mib(start - 2, start):.0f} MiB. Data: {args.train} train + '
    f'{args.eval} eval VOC-like records; {args.image_size} px, {args.num_classes} classes, batch '
    f'{args.batch_size}, {args.train_steps} steps. {whole_run.MEMORY_NOTE}',
  ]
  return report_table.publish(lines, args.out, 'memory_timeline.py')


if __name__ == '__main__':
  sys.exit(main())
