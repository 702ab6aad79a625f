"""The Beam stages before Transform at two data sizes: does their memory stay flat in the records?

    .venv/bin/python benchmarks/beam_stages.py [--records 2000,20000] [--eval-fraction 0.1]
        [--beam-runner in_memory] [--out benchmarks/results/beam_stages.md]

For each record count N, writes `benchmarks/voc_like.py`'s set (N train and N x --eval-fraction eval
records: 512x384 JPEGs, PNG masks of 21 classes) and runs the pipeline's first two components,
TolerantImportExampleGen -> RecordValidator (the pipeline's own split configuration and Beam
arguments), with LocalDagRunner and SQLite ML Metadata, in a subprocess whose process tree's
resident memory is sampled every 0.1 s (`whole_run.run_sampled`). Per component and size: seconds,
the peak inside its span (from ML Metadata) and its growth over the highest memory before it
started; then
each component's peak at the largest N over its peak at the smallest, against the target.
`benchmarks/scale.py` runs the whole pipeline; this runs the data-dependent part at 10 x its data.
"""

import argparse
import os
import sys
import tempfile

from iouseg import mlmd_store

import report_table
import tf_env  # noqa: F401  (first: sets up TensorFlow)
import voc_like
import whole_run

GROWTH_TARGET = 1.15  # a stage's peak at the largest / at the smallest record count
PIPELINE = 'beam_stages'
STAGES = ('ImportExampleGen', 'RecordValidator')


def child(data_root: str, work: str, runner: str) -> int:
  """The subprocess: the two components on `data_root`, their metadata in WORK/metadata.sqlite."""
  from tfx import v1 as tfx

  from components.record_validation import RecordValidator, TolerantImportExampleGen
  from pipeline import beam_runners, local_runner
  from pipeline.pipeline import example_gen_configs

  example_gen = TolerantImportExampleGen(
    input_base=data_root, **example_gen_configs(local_runner.split_patterns_for(data_root))
  ).with_id('ImportExampleGen')
  validator = RecordValidator(
    examples=example_gen.outputs['examples'], num_classes=voc_like.NUM_CLASSES
  )
  tfx.orchestration.LocalDagRunner().run(
    tfx.dsl.Pipeline(
      pipeline_name=PIPELINE,
      pipeline_root=os.path.join(work, 'root'),
      components=[example_gen, validator],
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
        os.path.join(work, 'metadata.sqlite')
      ),
      beam_pipeline_args=beam_runners.beam_args(runner),
    )
  )
  return 0


def measure(records: int, args, work: str) -> dict:
  """{stage: (seconds, peak MiB, growth MiB)} of one run at `records` train records."""
  data_root = os.path.join(work, 'data')
  voc_like.write(data_root, records, max(1, round(records * args.eval_fraction)))
  command = [
    sys.executable,
    os.path.abspath(__file__),
    '--child',
    data_root,
    work,
    args.beam_runner,
  ]
  returncode, _, samples = whole_run.run_sampled(
    command, {**os.environ, 'TF_USE_LEGACY_KERAS': '1'}
  )
  if returncode:
    raise RuntimeError(f'the pipeline subprocess at {records} records failed ({returncode})')
  spans = mlmd_store.component_spans(f'{work}/metadata.sqlite', PIPELINE)
  result = {}
  for stage in STAGES:
    start, end = spans[stage]
    before = max((rss for t, rss in samples if t <= start), default=samples[0][1]) / 2**20
    peak = max((rss for t, rss in samples if start <= t <= end), default=float('nan')) / 2**20
    result[stage] = (end - start, peak, peak - before)
  return result


def main(argv=None) -> int:
  if argv is None and sys.argv[1:2] == ['--child']:
    return child(*sys.argv[2:5])
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument(
    '--records', default='2000,20000', help='train records (default: %(default)s)'
  )
  parser.add_argument('--eval-fraction', type=float, default=0.1, help='(default: %(default)s)')
  parser.add_argument('--beam-runner', default='in_memory', help='(default: %(default)s)')
  parser.add_argument('--out', help='also write the markdown here')
  args = parser.parse_args(argv)
  counts = [int(n) for n in args.records.split(',')]

  results = {}
  for count in counts:
    with tempfile.TemporaryDirectory(prefix='beam_stages_') as work:
      results[count] = measure(count, args, work)
    print(count, results[count], flush=True)

  lines = report_table.header('train records | stage | seconds | peak MiB | growth MiB')
  for count, stages in results.items():
    lines += [
      f'| {count:,} | {stage} | {s:.1f} | {peak:.0f} | {growth:.0f} |'
      for stage, (s, peak, growth) in stages.items()
    ]
  small, large = counts[0], counts[-1]
  lines.append('')
  for stage in STAGES:
    ratio = results[large][stage][1] / results[small][stage][1]
    verdict = 'met' if ratio <= GROWTH_TARGET else 'missed'
    lines.append(
      f'- {stage}: peak at {large:,} / at {small:,} records: **{ratio:.2f}** '
      f'(target <= {GROWTH_TARGET}: {verdict})'
    )
  lines += [
    '',
    f'Data: voc_like (512x384 JPEG, 21-class PNG masks), eval records {args.eval_fraction:g} x '
    f'train; Beam runner {args.beam_runner}. Growth: peak minus the highest memory before the '
    f'stage started. {whole_run.MEMORY_NOTE}',
  ]
  return report_table.publish(lines, args.out, 'beam_stages.py')


if __name__ == '__main__':
  sys.exit(main())
