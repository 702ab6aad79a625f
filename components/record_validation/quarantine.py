"""The quarantine artifact's layout, and reading it back.

An `Examples` artifact (split_names set like any other), holding per split the bad records and why:
    <uri>/Split-<split>/data_tfrecord-*.gz  GZIP TFRecords; one tf.train.Example per bad record:
        quarantine/record    the record's bytes unchanged (for an unreadable stretch of an input file:
                             its raw bytes as they were in the file)
        quarantine/reason    why, naming the record: its image/filename, else split, file and index
        quarantine/filename  image/filename when the record has one, else ''
        quarantine/split, quarantine/file, quarantine/index, quarantine/offset
                             where it came from: the file it was read from (the validator's input
                             artifact), its index among that file's records, its byte offset
    <uri>/reasons/<split>-*.jsonl  the same minus the bytes, one JSON object per line, for reading
                                   with cat/grep/gsutil
    <uri>/summary.json  per split: input, valid and quarantined counts, the first reasons (in input
                        order) and max_bad_fraction
"""

import dataclasses
import json
import os

from tensorflow.core.example import example_pb2
from tfx.dsl.io import fileio

PREFIX = 'quarantine/'
SUMMARY_FILE = 'summary.json'
REASONS_DIR = 'reasons'
COUNTS_DIR = 'counts'  # Written by the Beam job, merged into summary.json, then removed.
RECORDS_FILE_PREFIX = 'data_tfrecord'  # The name ExampleGen gives its files.


@dataclasses.dataclass(frozen=True)
class Entry:
  split: str
  file: str
  index: int
  offset: int
  filename: str
  reason: str
  record: bytes

  def sort_key(self):
    return (self.file, self.index)

  def to_example_bytes(self) -> bytes:
    example = example_pb2.Example()
    feature = example.features.feature
    for key in ('split', 'file', 'filename', 'reason'):
      feature[PREFIX + key].bytes_list.value.append(getattr(self, key).encode())
    feature[PREFIX + 'record'].bytes_list.value.append(self.record)
    for key in ('index', 'offset'):
      feature[PREFIX + key].int64_list.value.append(getattr(self, key))
    return example.SerializeToString()

  @classmethod
  def from_example_bytes(cls, data: bytes) -> 'Entry':
    feature = example_pb2.Example.FromString(data).features.feature
    text = {
      key: feature[PREFIX + key].bytes_list.value[0].decode()
      for key in ('split', 'file', 'filename', 'reason')
    }
    return cls(
      index=feature[PREFIX + 'index'].int64_list.value[0],
      offset=feature[PREFIX + 'offset'].int64_list.value[0],
      record=feature[PREFIX + 'record'].bytes_list.value[0],
      **text,
    )

  def to_json(self) -> str:
    fields = dataclasses.asdict(self)
    fields['bytes'] = len(fields.pop('record'))
    return json.dumps(fields, sort_keys=True)


def split_dir(uri: str, split: str) -> str:
  return os.path.join(uri, f'Split-{split}')


def read_entries(uri: str, split: str) -> list[Entry]:
  """Every quarantined record of `split`, in input order."""
  import tensorflow as tf

  files = sorted(fileio.glob(os.path.join(split_dir(uri, split), '*')))
  entries = (
    [
      Entry.from_example_bytes(record.numpy())
      for record in tf.data.TFRecordDataset(files, compression_type='GZIP')
    ]
    if files
    else []
  )
  return sorted(entries, key=Entry.sort_key)


def read_summary(uri: str) -> dict:
  with fileio.open(os.path.join(uri, SUMMARY_FILE), 'r') as handle:
    return json.loads(handle.read())
