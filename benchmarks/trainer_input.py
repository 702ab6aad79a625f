"""Trainer input benchmark: does reading the transformed TFRecords keep up with the model?

    make demo
    .venv/bin/python benchmarks/trainer_input.py [--metadata runs/demo/metadata.sqlite]

Trains the Trainer's own compiled model (`trainer.task.compiled_model`) on four feeds, in turns:
- `trainer.data.make_dataset` over the Transform's output of the latest run (GZIP, as Transform
  writes it), through the data accessor TFX gives `run_fn`, with the Trainer's default settings
  (the decoded split cached in memory after its first pass);
- the same without the cache, and without the cache from the records rewritten uncompressed (what
  re-reading and GZIP cost every epoch);
- in-memory tensors (the limit): one batch of the same shapes held in memory and repeated, so the
  input costs nothing.
Prints images/s of each and its ratio to the limit (target: the Trainer's feed >= 0.95), and what
GZIP saves and costs on these records (size, compression time per record).
"""
import argparse
import os
import sys
import tempfile
import time
import zlib

import tf_env  # noqa: F401  pylint: disable=unused-import  (first: sets up TensorFlow)

import tensorflow as tf  # pylint: disable=wrong-import-position
import tensorflow_transform as tft  # pylint: disable=wrong-import-position
from tfx.types import artifact_utils  # pylint: disable=wrong-import-position

import report_table  # pylint: disable=wrong-import-position
import steps  # pylint: disable=wrong-import-position
from iouseg import mlmd_store  # pylint: disable=wrong-import-position
from trainer import data, task  # pylint: disable=wrong-import-position
from trainer.config import TrainerConfig  # pylint: disable=wrong-import-position

TARGET = 0.95
TRAINER_FEED = "Trainer's feed: TFRecords (GZIP)"
LIMIT = 'in-memory tensors (the limit)'


def transform_outputs(metadata: str, pipeline_name: str):
  """(transformed examples artifact, transform graph uri) of the latest run's Transform."""
  outputs = mlmd_store.latest_outputs(metadata, pipeline_name, 'Transform')
  return outputs['transformed_examples'][0], outputs['transform_graph'][0].uri


def uncompressed_copy(pattern: str, directory: str) -> str:
  """The records of `pattern` rewritten as one uncompressed TFRecord file; returns its pattern."""
  path = os.path.join(directory, 'train.tfrecord')
  with tf.io.TFRecordWriter(path) as writer:
    for record in tf.data.TFRecordDataset(tf.io.gfile.glob(pattern), compression_type='GZIP'):
      writer.write(record.numpy())
  return path


def gzip_cost(pattern: str):
  """(KB per record uncompressed, KB per record GZIP, ms per record to compress) of the records,
  compressed as Beam's TFRecord sink writes Transform's output: zlib's default level, gzip framing."""
  records = [r.numpy() for r in tf.data.TFRecordDataset(tf.io.gfile.glob(pattern),
                                                        compression_type='GZIP')]
  start = time.perf_counter()
  compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
  compressed = sum(len(compressor.compress(r)) for r in records) + len(compressor.flush())
  seconds = time.perf_counter() - start
  return (sum(map(len, records)) / len(records) / 1e3, compressed / len(records) / 1e3,
          seconds / len(records) * 1e3)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--metadata', default='runs/demo/metadata.sqlite',
                      help='ML Metadata of a finished run (default: %(default)s, from `make demo`)')
  parser.add_argument('--pipeline-name', default='iouseg')
  parser.add_argument('--batch-size', type=int, default=TrainerConfig.batch_size)
  parser.add_argument('--steps', type=int, default=60, help='timed steps per turn')
  parser.add_argument('--warmup', type=int, default=10, help='untimed steps per turn')
  parser.add_argument('--repeats', type=int, default=3, help='turns of each feed (median kept)')
  parser.add_argument('--out', help='also write the markdown here')
  args = parser.parse_args(argv)
  if not os.path.exists(args.metadata):
    parser.error(f'{args.metadata} does not exist: run `make demo` first, or pass --metadata')

  examples, graph_uri = transform_outputs(args.metadata, args.pipeline_name)
  tf_transform_output = tft.TFTransformOutput(graph_uri)
  accessor = data.data_accessor([examples])
  train_pattern = os.path.join(artifact_utils.get_split_uri([examples], 'train'), '*')
  config = TrainerConfig(batch_size=args.batch_size)

  def feed(pattern, cache_mib):
    return data.make_dataset([pattern], accessor, tf_transform_output, config.batch_size, seed=0,
                             cache_mib=cache_mib)

  with tempfile.TemporaryDirectory() as work:
    plain_pattern = uncompressed_copy(train_pattern, work)
    raw_kb, gzip_kb, gzip_ms = gzip_cost(train_pattern)
    one_batch = next(iter(feed(train_pattern, 0)))
    feeds = {
        f'{TRAINER_FEED} (cache_mib={config.cache_mib})': feed(train_pattern, config.cache_mib),
        'TFRecords (GZIP), no cache': feed(train_pattern, 0),
        'TFRecords rewritten uncompressed, no cache': feed(plain_pattern, 0),
        LIMIT: tf.data.Dataset.from_tensors(one_batch).repeat(),
    }
    model = task.compiled_model(config)
    rates = steps.interleaved(
        {name: (lambda d=dataset: steps.images_per_second(model, d, config.batch_size, args.steps,
                                                          args.warmup))
         for name, dataset in feeds.items()}, args.repeats)

  limit = rates[LIMIT]
  lines = ['| feed | images/s | ratio to in-memory |', '| --- | --- | --- |']
  lines += [f'| {name} | {rate:.1f} | {rate / limit:.2f} |' for name, rate in rates.items()]
  lines += ['', f"Target: the Trainer's feed >= {TARGET} x in-memory. Model: the demo FCN "
            f'({config.image_size}x{config.image_size}x{config.channels}, base filters '
            f'{config.base_filters}, depth {config.depth}), batch {config.batch_size}; median of '
            f'{args.repeats} interleaved turns of {args.steps} steps after {args.warmup} untimed.',
            f'GZIP: a transformed train example is {raw_kb:.0f} KB, {gzip_kb:.0f} KB compressed '
            f'({raw_kb / gzip_kb:.1f} x smaller); compressing costs {gzip_ms:.2f} ms per record.']
  device = 'GPU' if tf.config.list_physical_devices('GPU') else 'no GPU'
  return report_table.publish(lines, args.out, 'trainer_input.py', device=f', {device}')


if __name__ == '__main__':
  sys.exit(main())
