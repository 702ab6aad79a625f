"""Transform benchmark: the Transform component on Beam's DirectRunner with 1 and 2 worker processes,
against a plain tf.function loop decoding and resizing the same records on one core (the limit).

    .venv/bin/python benchmarks/transform_scaling.py [--train-records 12000 --eval-records 3000]

Writes a demo set of the given size, runs the real pipeline up to Transform once (in memory), then
re-runs only Transform (a TFX partial run, cache off) under each Beam setting; Transform's seconds
are its execution span in ML Metadata. The same on a small set measures each setting's start-up,
so that the rates beyond start-up (what a larger set approaches) are printed beside the whole-run
rates. The pipeline's Transform materialises nothing (`materialize=False`: the Trainer maps the raw
records through its graph), so it reads the train split once, for TFT's analyse pass (decode,
resize, the normalisation statistics), and exports the graph; the eval split is not read. The loop
decodes and resizes the same train records once, with the Transform's own functions. Prints
images/s and the ratios against the targets (2 workers >= 1.7 x 1 worker; 1 worker >= 0.5 x the
loop).
"""

import argparse
import os
import pathlib
import sys
import tempfile
import time

import tensorflow as tf
from tfx.orchestration.pipeline import RunOptions

from pipeline import beam_runners, local_runner
from transform import data_format
from transform.config import TransformConfig
from transform.preprocessing import decode_image, decode_mask

import demo_pipeline
import report_table
import tf_env  # noqa: F401  (first: sets up TensorFlow)

PIPELINE_NAME = 'transform-benchmark'
SCALING_TARGET = 1.7
LOOP_TARGET = 0.5


def plain_loop_images_per_second(file_pattern: str, config: TransformConfig) -> float:
  """Parse, decode and resize every record in one tf.data pipeline pinned to one thread."""
  spec = data_format.raw_feature_spec((data_format.IMAGE_ENCODED, data_format.MASK_ENCODED))

  def decode(serialized):
    raw = tf.io.parse_single_example(serialized, spec)
    return (
      decode_image(raw[data_format.IMAGE_ENCODED], config),
      decode_mask(raw[data_format.MASK_ENCODED], config),
    )

  options = tf.data.Options()
  options.threading.private_threadpool_size = 1
  options.threading.max_intra_op_parallelism = 1
  dataset = (
    tf.data.TFRecordDataset(tf.io.gfile.glob(file_pattern)).map(decode).with_options(options)
  )
  count = tf.function(lambda: dataset.reduce(0, lambda n, _: n + 1))
  start = time.perf_counter()
  images = int(count())
  return images / (time.perf_counter() - start)


SETTINGS = {
  'in_memory (one process; the local default)': beam_runners.beam_args('in_memory'),
  'multi_processing, 1 worker': beam_runners.beam_args('multi_processing', 1),
  'multi_processing, 2 workers': beam_runners.beam_args('multi_processing', 2),
}


def transform_seconds(work: str, train_records: int, eval_records: int) -> dict:
  """{setting: seconds of the Transform execution} on a demo set of the given size."""
  run_args = demo_pipeline.prepare(work, train_records, eval_records, PIPELINE_NAME)
  # Everything Transform needs, once; then Transform alone under each setting.
  local_runner.run(**run_args, run_options=RunOptions(to_nodes=['AnomalyGate']))
  seconds = {}
  for name, beam_args in SETTINGS.items():
    local_runner.run(
      **{**run_args, 'beam_pipeline_args': beam_args},
      run_options=RunOptions(from_nodes=['Transform'], to_nodes=['Transform']),
    )
    seconds[name] = demo_pipeline.seconds(run_args, 'Transform')
  return seconds


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--train-records', type=int, default=12000)
  parser.add_argument('--eval-records', type=int, default=3000)
  parser.add_argument(
    '--small-records',
    type=int,
    default=200,
    help='train records of the small run that measures start-up (eval: a quarter)',
  )
  parser.add_argument('--out', help='also write the markdown here')
  args = parser.parse_args(argv)
  # What Transform reads: the train records (its analyse pass), not the eval split.
  large, small = args.train_records, args.small_records

  with tempfile.TemporaryDirectory() as work:
    startup = transform_seconds(
      os.path.join(work, 'small'), args.small_records, args.small_records // 4
    )
    seconds = transform_seconds(os.path.join(work, 'large'), args.train_records, args.eval_records)
    data_root = os.path.join(work, 'large', 'data')
    size_mib = sum(p.stat().st_size for p in pathlib.Path(data_root, 'train').rglob('*')) / 2**20
    loop_rate = plain_loop_images_per_second(
      os.path.join(data_root, 'train', '*'), TransformConfig()
    )

  whole = {name: large / s for name, s in seconds.items()}
  beyond = {name: (large - small) / (seconds[name] - startup[name]) for name in seconds}
  one, two = 'multi_processing, 1 worker', 'multi_processing, 2 workers'
  lines = [
    '| what | seconds | start-up share | images/s | images/s beyond start-up | '
    'ratio (beyond start-up) |',
    '| --- | --- | --- | --- | --- | --- |',
  ]
  lines += [
    f'| Transform, {name} | {seconds[name]:.1f} | {startup[name] / seconds[name]:.0%} | '
    f'{whole[name]:.1f} | {beyond[name]:.1f} | {beyond[name] / beyond[one]:.2f} x 1 worker |'
    for name in seconds
  ]
  lines.append(
    f'| plain tf.function loop, one core (the limit) | {large / loop_rate:.1f} | | '
    f'{loop_rate:.1f} | | 1 worker = {beyond[one] / loop_rate:.2f} x the loop |'
  )
  lines += [
    '',
    f'Targets: 2 workers >= {SCALING_TARGET} x 1 worker (measured {whole[two] / whole[one]:.2f} '
    f'over the whole run, {beyond[two] / beyond[one]:.2f} beyond start-up); 1 worker >= '
    f'{LOOP_TARGET} x the loop (measured {whole[one] / loop_rate:.2f} and '
    f'{beyond[one] / loop_rate:.2f}). Data: {args.train_records} train demo records, what '
    f'Transform reads ({size_mib:.0f} MiB of TFRecords, 96x96 PNG in, 64x64 out; the '
    f'{args.eval_records} eval records are not read). Start-up: the Transform seconds of a '
    f'{small}-train-record run of the same setting (pipeline construction, preprocessing_fn '
    'tracing, worker processes); beyond start-up = the extra records over the extra seconds '
    'of the large run.',
  ]
  return report_table.publish(lines, args.out, 'transform_scaling.py')


if __name__ == '__main__':
  sys.exit(main())
