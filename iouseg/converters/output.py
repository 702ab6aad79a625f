"""Where records go: sharded TFRecord files, in a staging folder that replaces OUTPUT only when complete.

Staging is a hidden sibling of OUTPUT (same file system, so the final rename is atomic): a crash, a
--strict failure or Ctrl-C leaves OUTPUT as it was. --overwrite replaces only an empty folder or the
output of an earlier conversion (it holds conversion_report.json), so a mistyped --output cannot delete
unrelated data.
"""

import contextlib
import os
import shutil
import uuid
from pathlib import Path

from iouseg.converters.errors import ConversionError

REPORT_NAME = 'conversion_report.json'


def shard_name(index: int, count: int, gzip: bool) -> str:
  return f'data-{index:05d}-of-{count:05d}.tfrecord' + ('.gz' if gzip else '')


class ShardedWriter:
  """Spreads serialized records round-robin over `num_shards` TFRecord files in `folder`."""

  def __init__(self, folder: Path, num_shards: int, gzip: bool):
    import tensorflow as tf  # Late: finding and checking inputs should not pay for importing TF.

    options = tf.io.TFRecordOptions(compression_type='GZIP' if gzip else '')
    folder.mkdir(parents=True)
    self.names = [shard_name(index, num_shards, gzip) for index in range(num_shards)]
    self._writers = [tf.io.TFRecordWriter(str(folder / name), options) for name in self.names]
    self._written = 0

  def write(self, record: bytes) -> None:
    self._writers[self._written % len(self._writers)].write(record)
    self._written += 1

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    for writer in self._writers:
      writer.close()


def check_output_is_free(output: Path, input_dir: Path, overwrite: bool) -> None:
  """Fails before any work when writing to `output` would destroy something."""
  if output == input_dir or output in input_dir.parents:
    raise ConversionError(f'--output {output} contains the input folder {input_dir}')
  if not output.exists():
    return
  if not output.is_dir():
    raise ConversionError(f'--output {output} exists and is not a folder')
  if not any(output.iterdir()):
    return
  if not overwrite:
    raise ConversionError(
      f'--output {output} exists and is not empty; pass --overwrite to replace it'
    )
  if not (output / REPORT_NAME).is_file():
    raise ConversionError(
      f'--output {output} is not the output of an earlier conversion (it has no '
      f'{REPORT_NAME}); refusing to delete it: remove it yourself or pick another'
    )


@contextlib.contextmanager
def staged_output(output: Path):
  """Yields an empty folder to write into; it becomes `output` if the block succeeds, else vanishes."""
  output.parent.mkdir(parents=True, exist_ok=True)
  staging = _sibling(output, 'partial')
  staging.mkdir()  # mkdir (not mkdtemp) so the folder gets the user's umask, not mode 0700.
  try:
    yield staging
    _replace(output, staging)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise


def _replace(output: Path, staging: Path) -> None:
  if not output.exists():
    os.rename(staging, output)
    return
  retired = _sibling(output, 'old')
  os.rename(output, retired)
  os.rename(staging, output)
  shutil.rmtree(retired)


def _sibling(output: Path, purpose: str) -> Path:
  return output.with_name(f'.{output.name}.{purpose}-{uuid.uuid4().hex[:8]}')
