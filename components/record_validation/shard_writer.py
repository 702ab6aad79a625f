"""Writes a PCollection of serialized records as GZIP TFRecord files of about SHARD_BYTES each,
without holding them: each bundle streams its records into files that roll over at the size, under
temporary names; one step at the end renames the files of the bundles that succeeded.

Beam's `WriteToTFRecord(num_shards=N)` groups every record by its shard first, and the in-memory
DirectRunner holds a grouping's whole input: the split's records, about 300 KB of memory each for
VOC-sized records (`benchmarks/beam_stages.py`). `num_shards=0` streams but writes one file per bundle,
one file for a whole split on the in-memory runner, and GZIP files cannot be split, so a downstream Beam
job (Transform, the Evaluator) would read it in one worker.
"""

import os
import uuid

import apache_beam as beam
import tensorflow as tf
from apache_beam.transforms import window
from apache_beam.utils.windowed_value import WindowedValue
from tfx.dsl.io import fileio

_GZIP = tf.io.TFRecordOptions(compression_type='GZIP')
# GZIP files cannot be split, so a downstream Beam job (the RecordValidator, Transform, the
# Evaluator) reads each file in one worker: a split larger than one shard spreads over the workers
# (benchmarks/transform_scaling.py).
SHARD_BYTES = 4 * 2**20


class _WriteRolling(beam.DoFn):
  """Each bundle's records into temporary files of about `shard_bytes`; yields their paths."""

  def __init__(self, temp_dir: str, shard_bytes: int):
    super().__init__()
    self._temp_dir, self._shard_bytes = temp_dir, shard_bytes

  def start_bundle(self):
    # A retried bundle writes new names: only the paths of the attempt that finished are renamed.
    self._bundle, self._paths, self._writer, self._bytes = uuid.uuid4().hex, [], None, 0

  def process(self, record: bytes):
    if self._writer is None or self._bytes >= self._shard_bytes:
      self._close()
      self._paths.append(os.path.join(self._temp_dir, f'{self._bundle}-{len(self._paths):05d}'))
      self._writer, self._bytes = tf.io.TFRecordWriter(self._paths[-1], _GZIP), 0
    self._writer.write(record)
    self._bytes += len(record)
    return ()  # the paths come out of finish_bundle

  def _close(self):
    if self._writer is not None:
      self._writer.close()
      self._writer = None

  def finish_bundle(self):
    self._close()
    for path in self._paths:
      yield WindowedValue(path, window.GlobalWindow().max_timestamp(), [window.GlobalWindow()])


def _finalize(temp_paths: list, prefix: str, temp_dir: str) -> None:
  """Renames the written files to `<prefix>-NNNNN-of-MMMMM.gz` (one empty file when there were no
  records, so that readers find the split) and removes the temporary folder."""
  paths = sorted(temp_paths)
  if not paths:
    paths = [os.path.join(temp_dir, 'empty')]
    tf.io.TFRecordWriter(paths[0], _GZIP).close()
  for index, path in enumerate(paths):
    final = f'{prefix}-{index:05d}-of-{len(paths):05d}.gz'
    if fileio.exists(path) or not fileio.exists(final):  # else renamed by a finalize Beam retried
      fileio.rename(path, final, overwrite=True)
  fileio.rmtree(temp_dir)


@beam.ptransform_fn
def WriteInShards(records: beam.PCollection, prefix: str):
  """Writes `records` (bytes) to `<prefix>-NNNNN-of-MMMMM.gz`, files of about SHARD_BYTES of
  records each (before compression)."""
  temp_dir = f'{prefix}.beam-temp-{uuid.uuid4().hex}'
  fileio.makedirs(temp_dir)
  return (
    records
    | 'WriteRolling' >> beam.ParDo(_WriteRolling(temp_dir, SHARD_BYTES))
    | 'AllFiles' >> beam.combiners.ToList()
    | 'Finalize' >> beam.Map(_finalize, prefix, temp_dir)
  )
