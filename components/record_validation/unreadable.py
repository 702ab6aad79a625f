"""How an unreadable stretch of an input file travels through ImportExampleGen as one record.

`TolerantImportExampleGen` cannot put damaged bytes into its output as they are (they would not be a
record), so it wraps them in a tf.train.Example holding the raw bytes and the reason (file and byte
offset). The RecordValidator recognises such a record and quarantines it with that reason; no other
component should read ImportExampleGen's output directly.
"""

from tensorflow.core.example import example_pb2

REASON = 'iouseg/unreadable/reason'
SOURCE_FILE = 'iouseg/unreadable/file'
RAW_BYTES = 'iouseg/unreadable/bytes'


def make_record(raw: bytes, source_file: str, reason: str) -> bytes:
  example = example_pb2.Example()
  feature = example.features.feature
  feature[REASON].bytes_list.value.append(reason.encode())
  feature[SOURCE_FILE].bytes_list.value.append(source_file.encode())
  feature[RAW_BYTES].bytes_list.value.append(raw)
  return example.SerializeToString()


def parse(example: example_pb2.Example) -> tuple[bytes, str, str] | None:
  """(raw bytes, source file, reason) when `example` is such a record, else None."""
  feature = example.features.feature
  if REASON not in feature:
    return None

  def text(key):
    return b''.join(feature[key].bytes_list.value).decode('utf-8', 'replace')

  return b''.join(feature[RAW_BYTES].bytes_list.value), text(SOURCE_FILE), text(REASON)
