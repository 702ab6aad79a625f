"""RecordValidator on a fuzz corpus built here: every bad record is quarantined with a clear reason,
valid records pass through byte-identical, valid + quarantined == input per split, and the run fails
above max_bad_fraction with a message naming the count, the reasons and the quarantine.

The fuzz matrix runs through the executor with real Beam (DirectRunner); one tiny TFX pipeline
(LocalDagRunner, SQLite ML Metadata) runs TolerantImportExampleGen -> RecordValidator -> StatisticsGen
on a data root with a damaged file; stock ImportExampleGen's failure on such a file is pinned too.
"""

import io
import json
import os
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tfx import v1 as tfx
from tfx.components.example_gen.import_example_gen import executor as import_executor
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import proto_utils

from components.record_validation import (
  BadRecordsError,
  RecordValidator,
  TolerantImportExampleGen,
  beam_job,
  executor,
  quarantine,
  shard_writer,
  tfrecord_reader,
  tolerant_import,
)
from transform import data_format

from helpers import encoded

NUM_CLASSES = 4
SIZE = 16
_rng = np.random.default_rng(0)
# The corpus' bad records that have an image/filename (one more has none: it is not a tf.Example).
BAD_NAMES = (
  'bad/truncated.png',
  'bad/truncated.jpg',
  'bad/random.png',
  'bad/zero.png',
  'bad/mask_size.png',
  'bad/labels.png',
  'bad/16bit.png',
  'bad/16bit_mask.png',
  'bad/rgba_mask.png',
  'bad/palette_mask.png',
  'bad/bomb.png',
  'bad/bomb_warning.png',
  'bad/height.png',
  'bad/no_mask.png',
  'bad/zero_dims.png',
)


# --- The fuzz corpus ------------------------------------------------------------------------------


def _rgb(size=SIZE):
  return _rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def _mask(size=SIZE, ids=NUM_CLASSES):
  return _rng.integers(0, ids, (size, size), dtype=np.uint8)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
  return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))


def _gray_png(width: int, height: int, pixel_data: bytes) -> bytes:
  ihdr = struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)
  return (
    b'\x89PNG\r\n\x1a\n'
    + _png_chunk(b'IHDR', ihdr)
    + _png_chunk(b'IDAT', pixel_data)
    + _png_chunk(b'IEND', b'')
  )


def _bomb(width: int, height: int) -> bytes:
  """A real 8-bit grayscale PNG of zeros: a few hundred KB that decode to width*height bytes."""
  compressor, row, parts = zlib.compressobj(9), bytes(width + 1), []  # Filter byte + pixels.
  for _ in range(height):
    parts.append(compressor.compress(row))
  parts.append(compressor.flush())
  return _gray_png(width, height, b''.join(parts))


def _record(name, image, mask, image_format='png', height=SIZE, width=SIZE, channels=3) -> bytes:
  return data_format.make_example(
    image, image_format, height, width, channels, name, mask
  ).SerializeToString()


def _valid_records(prefix: str, count: int):
  records = [
    _record(f'{prefix}/ok_{i}.png', encoded(_rgb()), encoded(_mask())) for i in range(count)
  ]
  with_ignore = _mask()
  with_ignore[:4] = data_format.DEFAULT_IGNORE_LABEL
  records += [
    _record(f'{prefix}/ok.jpg', encoded(_rgb(), 'JPEG'), encoded(_mask()), image_format='jpeg'),
    _record(f'{prefix}/gray.png', encoded(_rgb()[..., 0]), encoded(_mask()), channels=1),
    _record(
      f'{prefix}/rgba.png',
      encoded(_rng.integers(0, 256, (SIZE, SIZE, 4), dtype=np.uint8)),
      encoded(_mask()),
      channels=4,
    ),
    _record(f'{prefix}/ignore.png', encoded(_rgb()), encoded(with_ignore)),
  ]
  return records


def _bad_records():
  """image/filename (or None) -> (record bytes, expected words in its reason)."""
  good_png, good_jpeg, good_mask = encoded(_rgb()), encoded(_rgb(), 'JPEG'), encoded(_mask())
  out_of_range = _mask()
  out_of_range[0, 0] = 7
  palette = Image.fromarray(_mask(), 'P')
  palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
  buf = io.BytesIO()
  palette.save(buf, format='PNG')
  missing_mask = data_format.make_example(good_png, 'png', SIZE, SIZE, 3, 'bad/no_mask.png', b'')
  del missing_mask.features.feature[data_format.MASK_ENCODED]
  return {
    'bad/truncated.png': (
      _record('bad/truncated.png', good_png[: len(good_png) // 2], good_mask),
      'cannot decode image',
    ),
    'bad/truncated.jpg': (
      _record(
        'bad/truncated.jpg', good_jpeg[: len(good_jpeg) // 2], good_mask, image_format='jpeg'
      ),
      'cannot decode image',
    ),
    'bad/random.png': (
      _record('bad/random.png', _rng.bytes(300), good_mask),
      'cannot decode image: not an image format Pillow recognises',
    ),
    'bad/zero.png': (_record('bad/zero.png', b'', good_mask), 'empty image (0 bytes)'),
    'bad/zero_dims.png': (
      _record('bad/zero_dims.png', _gray_png(0, 0, zlib.compress(b'')), good_mask),
      'cannot decode image',
    ),
    'bad/mask_size.png': (
      _record('bad/mask_size.png', good_png, encoded(_mask(SIZE // 2))),
      'mask is 8x8 (HxW) but its image is 16x16',
    ),
    'bad/labels.png': (
      _record('bad/labels.png', good_png, encoded(out_of_range)),
      'class ids [7] out of range',
    ),
    'bad/16bit.png': (
      _record('bad/16bit.png', encoded(np.zeros((SIZE, SIZE), np.uint16)), good_mask, channels=1),
      '16-bit PNG image',
    ),
    'bad/16bit_mask.png': (
      _record('bad/16bit_mask.png', good_png, encoded(np.zeros((SIZE, SIZE), np.uint16))),
      '16-bit PNG mask',
    ),
    'bad/rgba_mask.png': (
      _record('bad/rgba_mask.png', good_png, encoded(np.zeros((SIZE, SIZE, 4), np.uint8))),
      'mask has 4 channels',
    ),
    'bad/palette_mask.png': (
      _record('bad/palette_mask.png', good_png, buf.getvalue()),
      'palette PNG mask',
    ),
    # Above twice Pillow's MAX_IMAGE_PIXELS (an error), and in its warning band (made an error).
    'bad/bomb.png': (
      _record('bad/bomb.png', _bomb(16000, 12000), good_mask),
      'image too large, possible decompression bomb',
    ),
    'bad/bomb_warning.png': (
      _record('bad/bomb_warning.png', _bomb(10000, 10000), good_mask),
      'image too large, possible decompression bomb',
    ),
    'bad/height.png': (
      _record('bad/height.png', good_png, good_mask, height=SIZE + 1),
      'image/height says 17 but the image has 16',
    ),
    'bad/no_mask.png': (
      missing_mask.SerializeToString(),
      'no image/segmentation/class/encoded feature',
    ),
    None: (b'\xff\x00 not a proto \x01' * 5, 'not a tf.train.Example'),
  }


def _write_tfrecords(path, records, compression=None):
  with tf.io.TFRecordWriter(str(path), options=compression) as writer:
    for record in records:
      writer.write(record)


def _framed(records) -> bytes:
  return b''.join(tfrecord_reader.encode_record(record) for record in records)


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  """An Examples artifact's folder (like ExampleGen's) holding the fuzz corpus, and what it holds.

  train: data file (GZIP) of valid + bad records, an empty file, a file with a bad CRC in its 2nd
  record, a file cut in the middle of its 2nd record. eval: 4 valid records and 1 bad one.
  """
  root = tmp_path_factory.mktemp('corpus')
  bad = _bad_records()
  assert set(bad) == set(BAD_NAMES) | {None}
  train_valid, eval_valid = _valid_records('train', 4), _valid_records('eval', 0)
  crc_records, cut_records = _valid_records('crc', 2)[:3], _valid_records('cut', 2)[:3]
  train, evaluation = root / 'Split-train', root / 'Split-eval'
  train.mkdir()
  evaluation.mkdir()
  mixed = list(train_valid) + [record for record, _ in bad.values()]
  _rng.shuffle(mixed)
  _write_tfrecords(train / 'data_tfrecord-00000-of-00001.gz', mixed, 'GZIP')
  (train / 'empty.tfrecord').write_bytes(b'')
  framed = bytearray(_framed(crc_records))
  second = 16 + len(crc_records[0])
  framed[second + 12 + 40] ^= 0xFF  # A byte inside the 2nd record's payload.
  (train / 'crc.tfrecord').write_bytes(bytes(framed))
  framed, cut_offset = _framed(cut_records), 16 + len(cut_records[0])
  (train / 'cut.tfrecord').write_bytes(framed[: cut_offset + 100])
  eval_bad = _record('eval/labels.png', encoded(_rgb()), encoded(_mask(ids=9) + 4))
  _write_tfrecords(evaluation / 'data_tfrecord-00000-of-00001.gz', eval_valid + [eval_bad], 'GZIP')
  return {
    'uri': str(root),
    'bad': bad,
    'valid': {
      'train': train_valid + [crc_records[0], crc_records[2], cut_records[0]],
      'eval': eval_valid,
    },
    # Records per split as a reader sees them: a damaged stretch counts as one.
    'input': {'train': len(mixed) + 0 + 3 + 2, 'eval': len(eval_valid) + 1},
    'crc_offset': second,
    'cut_offset': cut_offset,
    'mixed': mixed,
  }


def _examples(uri, splits=('train', 'eval')):
  artifact = standard_artifacts.Examples()
  artifact.uri = str(uri)
  artifact.split_names = artifact_utils.encode_split_names(list(splits))
  return artifact


def _run_executor(input_uri, out_dir, max_bad_fraction, splits=('train', 'eval')):
  valid, bad = _examples(out_dir / 'valid', []), _examples(out_dir / 'quarantine', [])
  error = None
  try:
    executor.Executor().Do(
      {'examples': [_examples(input_uri, splits)]},
      {'valid_examples': [valid], 'quarantine': [bad]},
      {'num_classes': NUM_CLASSES, 'ignore_label': 255, 'max_bad_fraction': max_bad_fraction},
    )
  except BadRecordsError as raised:
    error = raised
  return valid, bad, error


def _read_split(artifact, split):
  files = tf.io.gfile.glob(os.path.join(artifact_utils.get_split_uri([artifact], split), '*'))
  return [record.numpy() for record in tf.data.TFRecordDataset(files, compression_type='GZIP')]


@pytest.fixture(scope='module')
def passing(corpus, tmp_path_factory):
  """The corpus through the executor with max_bad_fraction=1: nothing fails."""
  return _run_executor(corpus['uri'], tmp_path_factory.mktemp('passing'), 1.0)


# --- The fuzz matrix ------------------------------------------------------------------------------


@pytest.mark.parametrize('name', BAD_NAMES)
def test_each_bad_record_is_quarantined_with_its_reason(corpus, passing, name):
  _, bad, error = passing
  assert error is None
  entries = [entry for entry in quarantine.read_entries(bad.uri, 'train') if entry.filename == name]
  assert len(entries) == 1, name
  record, words = corpus['bad'][name]
  assert entries[0].reason.startswith(f'{name}: ') and words in entries[0].reason, entries[0].reason
  assert entries[0].record == record  # Unchanged.


def test_unparsable_record_is_named_by_split_file_and_index(corpus, passing):
  entries = [
    entry
    for entry in quarantine.read_entries(passing[1].uri, 'train')
    if 'not a tf.train.Example' in entry.reason
  ]
  assert len(entries) == 1
  assert entries[0].reason.startswith('train record #')
  assert 'data_tfrecord-00000-of-00001.gz' in entries[0].reason
  assert entries[0].record == corpus['bad'][None][0]


def test_damaged_files_are_quarantined_with_file_and_byte_offset(corpus, passing):
  entries = {
    os.path.basename(entry.file): entry
    for entry in quarantine.read_entries(passing[1].uri, 'train')
    if 'unreadable input' in entry.reason
  }
  assert set(entries) == {'crc.tfrecord', 'cut.tfrecord'}
  crc, cut = entries['crc.tfrecord'], entries['cut.tfrecord']
  assert crc.index == 1 and crc.offset == corpus['crc_offset']
  assert crc.reason == (
    f'train record #1 of crc.tfrecord: unreadable input: corrupt record at byte '
    f'{crc.offset}: its {len(crc.record) - 16} bytes fail their CRC check'
  )
  assert cut.index == 1 and cut.offset == corpus['cut_offset'] and len(cut.record) == 100
  assert 'truncated file' in cut.reason and f'at byte {cut.offset}' in cut.reason


def test_valid_records_pass_through_unchanged_and_nothing_is_lost(corpus, passing):
  valid, bad, _ = passing
  summary = quarantine.read_summary(bad.uri)
  for split in ('train', 'eval'):
    passed = _read_split(valid, split)
    assert sorted(passed) == sorted(corpus['valid'][split])
    quarantined = quarantine.read_entries(bad.uri, split)
    assert len(passed) + len(quarantined) == corpus['input'][split]
    counts = summary['splits'][split]
    assert set(counts) == {'input', 'valid', 'quarantined', 'first_reasons'}
    assert (counts['input'], counts['valid'], counts['quarantined']) == (
      corpus['input'][split],
      len(passed),
      len(quarantined),
    )
  first_reasons = summary['splits']['train']['first_reasons']
  expected = _first_train_reasons(corpus)
  assert len(first_reasons) == len(expected) == beam_job.FIRST_REASONS
  for reason, (start, words) in zip(first_reasons, expected):
    assert reason.startswith(start) and words in reason, (reason, start, words)
  assert summary['splits']['eval']['first_reasons'] == [
    'eval/labels.png: class ids [4, 5, 6, 7, 8, 9, 10, 11, 12] out of range: --num-classes 4 allows '
    '0..3, plus the ignore label 255'
  ]
  lines = tf.io.gfile.glob(os.path.join(bad.uri, 'reasons', 'train*.jsonl'))
  reasons = [json.loads(line) for path in lines for line in open(path)]
  assert len(reasons) == len(quarantine.read_entries(bad.uri, 'train'))


def _first_train_reasons(corpus) -> list:
  """(start, words) of each of the train split's first reasons in input order (file path, then index
  in the file), from how the corpus was written: the damaged record of crc.tfrecord and of
  cut.tfrecord, then the bad records of the data file in the order they were shuffled into it."""
  expected = [
    (
      f'train record #1 of crc.tfrecord: unreadable input: corrupt record at byte '
      f'{corpus["crc_offset"]}: ',
      'fail their CRC check',
    ),
    ('train record #1 of cut.tfrecord: unreadable input: ', 'truncated file'),
  ]
  bad = {record: (name, words) for name, (record, words) in corpus['bad'].items()}
  for index, record in enumerate(corpus['mixed']):
    if record in bad:
      name, words = bad[record]
      expected.append(
        (
          f'{name}: ' if name else f'train record #{index} of data_tfrecord-00000-of-00001.gz: ',
          words,
        )
      )
  return expected[: beam_job.FIRST_REASONS]


def test_large_split_is_written_in_shards_that_hold_every_valid_record(
  corpus, tmp_path, monkeypatch
):
  # GZIP files cannot be split: one file per split would keep a multi-worker Transform on one worker.
  monkeypatch.setattr(shard_writer, 'SHARD_BYTES', 1024)
  valid, _, error = _run_executor(corpus['uri'], tmp_path, 1.0)
  assert error is None
  train_files = tf.io.gfile.glob(os.path.join(artifact_utils.get_split_uri([valid], 'train'), '*'))
  assert len(train_files) > 1
  assert sorted(_read_split(valid, 'train')) == sorted(corpus['valid']['train'])


def test_outputs_are_examples_artifacts_downstream_components_read(passing):
  valid, bad, _ = passing
  for artifact in (valid, bad):
    assert artifact_utils.decode_split_names(artifact.split_names) == ['train', 'eval']
    assert examples_utils.get_payload_format(artifact) == example_gen_pb2.FORMAT_TF_EXAMPLE
    for split in ('train', 'eval'):
      names = os.listdir(artifact_utils.get_split_uri([artifact], split))
      assert names and all(
        name.startswith('data_tfrecord-') and name.endswith('.gz') for name in names
      )


def test_zero_tolerance_fails_naming_count_reasons_and_quarantine(corpus, tmp_path):
  _, bad, error = _run_executor(corpus['uri'], tmp_path, 0.0)
  bad_train = len(corpus['bad']) + 2
  assert error is not None
  message = str(error)
  assert message.startswith(
    f'{bad_train + 1} of {corpus["input"]["train"] + corpus["input"]["eval"]} '
    f'records are bad, more than max_bad_fraction=0 allows'
  )
  assert f'train {bad_train} of {corpus["input"]["train"]}' in message
  assert 'eval 1 of 5 (20.0%)' in message
  assert (
    'First reasons:\n  train record #1 of crc.tfrecord: unreadable input: corrupt record' in message
  )
  assert bad.uri in message
  # The quarantine is complete before the run fails.
  assert len(quarantine.read_entries(bad.uri, 'train')) == bad_train
  assert quarantine.read_summary(bad.uri)['splits']['eval']['quarantined'] == 1


def test_fraction_at_or_below_max_passes_and_above_fails(corpus, tmp_path):
  # The eval split alone: 1 bad of 5.
  _, _, error = _run_executor(corpus['uri'], tmp_path / 'at', 0.2, splits=('eval',))
  assert error is None
  _, _, error = _run_executor(corpus['uri'], tmp_path / 'above', 0.19, splits=('eval',))
  assert error is not None and '1 of 5 records are bad' in str(error)


def test_empty_split_passes_with_zero_records(tmp_path):
  (tmp_path / 'in' / 'Split-train').mkdir(parents=True)
  (tmp_path / 'in' / 'Split-train' / 'empty.gz').write_bytes(b'')
  valid, bad, error = _run_executor(tmp_path / 'in', tmp_path, 0.0, splits=('train',))
  assert error is None and _read_split(valid, 'train') == []
  assert quarantine.read_summary(bad.uri)['splits']['train'] == {
    'input': 0,
    'valid': 0,
    'quarantined': 0,
    'first_reasons': [],
  }


def test_settings_are_checked_when_the_pipeline_is_built():
  channel = tfx.dsl.Channel(type=standard_artifacts.Examples)
  with pytest.raises(ValueError, match='num_classes must be between 1 and the ignore label'):
    RecordValidator(examples=channel, num_classes=256)
  with pytest.raises(ValueError, match='max_bad_fraction must be between 0 and 1'):
    RecordValidator(examples=channel, num_classes=4, max_bad_fraction=1.5)


# --- The reader on damaged files ------------------------------------------------------------------


def test_reader_after_a_corrupt_length_gives_up_on_the_rest_of_the_file(tmp_path):
  records = [b'one', b'two', b'three']
  framed = bytearray(_framed(records))
  framed[19 + 2] ^= 0xFF  # Inside the 2nd record's length field.
  (tmp_path / 'f.tfrecord').write_bytes(bytes(framed))
  read = list(tfrecord_reader.read_file(str(tmp_path / 'f.tfrecord')))
  assert [r.data for r in read[:1]] == [b'one'] and len(read) == 2
  assert read[1].offset == 19 and read[1].data == bytes(framed[19:])
  assert 'corrupt record header at byte 19 (length CRC mismatch)' in read[1].error


def test_reader_notices_gzip_cut_at_a_record_boundary(tmp_path):
  # Beam's reader sees a clean end here and silently drops the records after the cut.
  first = tfrecord_reader.encode_record(b'one')
  stream = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
  (tmp_path / 'f.gz').write_bytes(stream.compress(first) + stream.flush(zlib.Z_FULL_FLUSH))
  read = list(tfrecord_reader.read_file(str(tmp_path / 'f.gz')))
  assert [(r.data, r.error) for r in read[:1]] == [(b'one', None)] and len(read) == 2
  assert read[1].offset == len(first)
  assert read[1].error.startswith(
    f'cannot decompress the file from byte {len(first)} of the decompressed stream on (EOFError'
  )


# --- ImportExampleGen and damaged files, and a real pipeline --------------------------------------


def _data_root(root, corpus_records):
  for split in ('train', 'eval'):
    (root / split).mkdir(parents=True)
  valid_train, valid_eval = _valid_records('p_train', 2), _valid_records('p_eval', 0)
  _write_tfrecords(root / 'train' / 'data-00000-of-00002.tfrecord', valid_train)
  framed = bytearray(_framed(corpus_records))
  framed[16 + len(corpus_records[0]) + 12 + 40] ^= 0xFF
  (root / 'train' / 'data-00001-of-00002.tfrecord').write_bytes(bytes(framed))
  (root / 'train' / 'empty.tfrecord').write_bytes(b'')
  _write_tfrecords(root / 'eval' / 'data-00000-of-00001.tfrecord.gz', valid_eval, 'GZIP')
  return valid_train + [corpus_records[0], corpus_records[2]], valid_eval


def _import_properties(data_root):
  return {
    'input_base': str(data_root),
    'input_config': proto_utils.proto_to_json(
      example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name='train', pattern='train/*')])
    ),
    'output_config': proto_utils.proto_to_json(example_gen_pb2.Output()),
    'output_data_format': example_gen_pb2.FORMAT_TF_EXAMPLE,
  }


def test_stock_import_example_gen_fails_on_a_bad_crc_without_naming_the_file(tmp_path):
  """Why TolerantImportExampleGen exists: Beam's TFRecord reader stops the whole job."""
  _data_root(tmp_path / 'data', _valid_records('x', 2)[:3])
  output = _examples(tmp_path / 'out', [])
  with pytest.raises(ValueError, match='Not a valid TFRecord. Mismatch of data mask') as raised:
    import_executor.Executor().Do({}, {'examples': [output]}, _import_properties(tmp_path / 'data'))
  assert 'data-00001-of-00002' not in str(raised.value)


def test_tolerant_import_streams_every_record_into_shards_in_file_order(tmp_path, monkeypatch):
  # No shuffle before the write, which the in-memory DirectRunner would hold in memory whole.
  monkeypatch.setattr(shard_writer, 'SHARD_BYTES', 1024)
  records = _valid_records('order', 6)
  (tmp_path / 'data' / 'train').mkdir(parents=True)
  _write_tfrecords(tmp_path / 'data' / 'train' / 'data.tfrecord', records)
  output = _examples(tmp_path / 'out', [])
  tolerant_import.Executor().Do({}, {'examples': [output]}, _import_properties(tmp_path / 'data'))
  split_dir = artifact_utils.get_split_uri([output], 'train')
  names = sorted(os.listdir(split_dir))
  assert len(names) > 1  # nothing else (no temporary folder) is left in the split
  assert names == [f'data_tfrecord-{i:05d}-of-{len(names):05d}.gz' for i in range(len(names))]
  paths = [os.path.join(split_dir, name) for name in names]
  read = [r.numpy() for r in tf.data.TFRecordDataset(paths, compression_type='GZIP')]
  assert read == records
  assert examples_utils.get_payload_format(output) == example_gen_pb2.FORMAT_TF_EXAMPLE


@pytest.mark.e2e
def test_pipeline_quarantines_a_damaged_input_file(tmp_path):
  data_root = tmp_path / 'data'
  valid_train, valid_eval = _data_root(data_root, _valid_records('damaged', 2)[:3])
  example_gen = TolerantImportExampleGen(
    input_base=str(data_root),
    input_config=tfx.proto.Input(
      splits=[
        tfx.proto.Input.Split(name='train', pattern='train/*'),
        tfx.proto.Input.Split(name='eval', pattern='eval/*'),
      ]
    ),
  )
  validator = RecordValidator(
    examples=example_gen.outputs['examples'], num_classes=NUM_CLASSES, max_bad_fraction=0.5
  )
  statistics_gen = tfx.components.StatisticsGen(examples=validator.outputs['valid_examples'])
  metadata_path = str(tmp_path / 'metadata.sqlite')
  tfx.orchestration.LocalDagRunner().run(
    tfx.dsl.Pipeline(
      pipeline_name='record_validation',
      pipeline_root=str(tmp_path / 'root'),
      components=[example_gen, validator, statistics_gen],
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
        metadata_path
      ),
    )
  )

  from ml_metadata.metadata_store import metadata_store

  store = metadata_store.MetadataStore(
    tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path)
  )
  by_output = {}
  for artifact in store.get_artifacts_by_type('Examples'):
    by_output[artifact.uri.split(os.sep)[-2]] = artifact
  assert set(by_output) == {'examples', 'valid_examples', 'quarantine'}
  assert by_output['valid_examples'].properties['split_names'].string_value == '["train", "eval"]'
  assert store.get_artifacts_by_type('ExampleStatistics')  # StatisticsGen read the valid records.

  valid, bad = _examples(by_output['valid_examples'].uri), _examples(by_output['quarantine'].uri)
  assert sorted(_read_split(valid, 'train')) == sorted(valid_train)
  assert sorted(_read_split(valid, 'eval')) == sorted(valid_eval)
  [entry] = quarantine.read_entries(bad.uri, 'train')
  damaged = os.path.join(str(data_root), 'train', 'data-00001-of-00002.tfrecord')
  assert entry.reason.startswith(f'{damaged}: corrupt record at byte ')
  assert entry.reason.endswith('fail their CRC check')
  assert quarantine.read_entries(bad.uri, 'eval') == []


def test_compiles_for_kubeflow_v2(tmp_path):
  """The container runs executors by class path; a runtime parameter can set the fraction."""
  example_gen = TolerantImportExampleGen(input_base='gs://bucket/data').with_id('ImportExampleGen')
  validator = RecordValidator(
    examples=example_gen.outputs['examples'],
    num_classes=NUM_CLASSES,
    max_bad_fraction=tfx.dsl.experimental.RuntimeParameter(
      name='max_bad_fraction', ptype=float, default=0.0
    ),
  )
  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
    config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image='image'),
    output_dir=str(tmp_path),
    output_filename='spec.json',
  )
  runner.run(
    tfx.dsl.Pipeline(
      pipeline_name='p', pipeline_root='gs://bucket/root', components=[example_gen, validator]
    ),
    write_out=True,
  )
  spec = json.loads((tmp_path / 'spec.json').read_text())['pipelineSpec']
  executors = spec['deploymentSpec']['executors']
  assert executors['RecordValidator_executor']['container']['args'][:2] == [
    '--executor_class_path',
    'components.record_validation.executor.Executor',
  ]
  assert executors['ImportExampleGen_executor']['container']['args'][:2] == [
    '--executor_class_path',
    'components.record_validation.tolerant_import.Executor',
  ]
  parameters = spec['components']['RecordValidator']['inputDefinitions']['parameters']
  assert parameters == {
    'num_classes': {'type': 'INT'},
    'ignore_label': {'type': 'INT'},
    'max_bad_fraction': {'type': 'DOUBLE'},
  }
  outputs = spec['components']['RecordValidator']['outputDefinitions']['artifacts']
  assert set(outputs) == {'valid_examples', 'quarantine'}
