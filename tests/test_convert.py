"""`iouseg convert` on the real samples in data/samples and on a corpus of broken files built here."""

import argparse
import io
import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from iouseg.converters import ConversionError, add_arguments, convert, main
from transform import data_format

from helpers import SAMPLES, encoded

NUCLEI = SAMPLES / 'nuclei'
VOC_SAMPLE = SAMPLES / 'voc-sample'
VOC_ID = '2011_000000'


# --- helpers ----------------------------------------------------------------------------------------


def run_cli(*argv) -> int:
  """Runs `iouseg convert ARGV` the way the CLI does: our flags on a parser, then main."""
  parser = argparse.ArgumentParser(prog='iouseg convert')
  add_arguments(parser)
  return main(parser.parse_args([str(arg) for arg in argv]))


def read_records(split_dir: Path, compression: str = '') -> list:
  """Every record of a split, as {feature name: python value}, read back with tf.data."""
  files = sorted(str(path) for path in split_dir.glob('data-*-of-*.tfrecord*'))
  records = []
  for raw in tf.data.TFRecordDataset(files, compression_type=compression):
    features = tf.train.Example.FromString(raw.numpy()).features.feature
    records.append(
      {
        name: (value.bytes_list.value[0] if value.bytes_list.value else value.int64_list.value[0])
        for name, value in features.items()
      }
    )
  return records


def decoded_mask(record: dict) -> np.ndarray:
  """The mask as the Transform sees it: TF's PNG decoder, one channel."""
  mask = tf.io.decode_png(record[data_format.MASK_ENCODED]).numpy()
  assert mask.shape[-1] == 1
  return mask[..., 0]


def assert_image_kept(record: dict, source: Path, image_format: bytes, shape: tuple) -> None:
  """`record` holds `source`'s bytes unchanged, with their format and (height, width, channels)."""
  assert record[data_format.IMAGE_ENCODED] == source.read_bytes()
  assert record[data_format.IMAGE_FORMAT] == image_format
  assert (
    record[data_format.IMAGE_HEIGHT],
    record[data_format.IMAGE_WIDTH],
    record[data_format.IMAGE_CHANNELS],
  ) == shape


def by_filename(records: list) -> dict:
  return {record[data_format.IMAGE_FILENAME].decode(): record for record in records}


def png_declaring_size(width: int, height: int) -> bytes:
  """A valid-looking 1x1 grayscale PNG whose header claims width x height (a decompression bomb)."""
  data = bytearray(encoded(Image.new('L', (1, 1))))
  data[16:24] = struct.pack(
    '>II', width, height
  )  # IHDR payload starts after signature, length, type.
  data[29:33] = struct.pack('>I', zlib.crc32(bytes(data[12:29])))  # Pillow checks the IHDR CRC.
  return bytes(data)


def assert_inputs_accounted_for(report: dict) -> None:
  assert report['written'] + len(report['skipped']) == report['inputs']
  assert report['written'] == sum(report['records_per_split'].values())


# --- real data --------------------------------------------------------------------------------------


def test_nuclei_split_folders_convert_exactly(tmp_path):
  output = tmp_path / 'out'

  report = convert(NUCLEI, output, num_classes=2, shards=3)

  assert report['records_per_split'] == {'eval': 4, 'train': 12}
  assert report['skipped'] == [] and report['inputs'] == 16
  assert_inputs_accounted_for(report)
  assert json.loads((output / 'conversion_report.json').read_text()) == report
  expected_pixels = np.zeros(2, np.int64)
  for split, _count in (('train', 12), ('eval', 4)):
    records = by_filename(read_records(output / split))
    sources = sorted((NUCLEI / split / 'images').glob('*.png'))
    assert sorted(records) == [f'{split}/images/{path.name}' for path in sources]
    assert len(list((output / split).glob('data-*-of-00003.tfrecord'))) == 3
    for image_path in sources:
      record = records[f'{split}/images/{image_path.name}']
      source_mask = np.array(Image.open(NUCLEI / split / 'masks' / image_path.name))
      assert_image_kept(record, image_path, b'png', (128, 128, 1))
      np.testing.assert_array_equal(decoded_mask(record), source_mask)
      expected_pixels += np.bincount(source_mask.ravel(), minlength=2)
  assert report['class_pixel_counts'] == expected_pixels.tolist()
  assert report['ignore_pixel_count'] == 0
  assert report['image_size'] == {
    'min_height': 128,
    'max_height': 128,
    'min_width': 128,
    'max_width': 128,
  }


def test_flat_folder_split_by_fraction_is_deterministic_for_a_seed(tmp_path):
  flat = tmp_path / 'flat'
  for kind in ('images', 'masks'):
    (flat / kind).mkdir(parents=True)
    for path in NUCLEI.glob(f'*/{kind}/*.png'):
      shutil.copy(path, flat / kind / path.name)
  all_names = {f'images/{path.name}' for path in (flat / 'images').iterdir()}

  def split_names(seed: int, name: str) -> dict:
    assert (
      run_cli(
        '--input',
        flat,
        '--output',
        tmp_path / name,
        '--num-classes',
        2,
        '--eval-fraction',
        0.25,
        '--seed',
        seed,
      )
      == 0
    )
    return {
      split: set(by_filename(read_records(tmp_path / name / split))) for split in ('train', 'eval')
    }

  first, again, other_seed = split_names(7, 'a'), split_names(7, 'b'), split_names(8, 'c')

  assert first == again
  assert (len(first['train']), len(first['eval'])) == (12, 4)
  assert first['train'] | first['eval'] == all_names
  assert not first['train'] & first['eval']
  assert other_seed['eval'] != first['eval']


def test_voc_sample_keeps_class_ids_and_void(tmp_path):
  output = tmp_path / 'voc'

  report = convert(VOC_SAMPLE, output, layout='voc', num_classes=21)

  source_mask = np.array(Image.open(VOC_SAMPLE / 'SegmentationClass' / f'{VOC_ID}.png'))
  assert report['records_per_split'] == {'train': 1, 'eval': 1}  # val.txt is written as 'eval'.
  assert_inputs_accounted_for(report)
  for split in ('train', 'eval'):
    [record] = read_records(output / split)
    assert_image_kept(record, VOC_SAMPLE / 'JPEGImages' / f'{VOC_ID}.jpg', b'jpeg', (375, 500, 3))
    mask = decoded_mask(record)
    np.testing.assert_array_equal(mask, source_mask)  # Palette indices, not palette colours.
    assert set(np.unique(mask)) == {0, 5, 9, 11, 15, 255}
    split_report = report['splits'][split]
    assert split_report['ignore_pixel_count'] == int((source_mask == 255).sum())
    assert (
      split_report['class_pixel_counts']
      == np.bincount(source_mask[source_mask != 255], minlength=21).tolist()
    )
  # The sample lists its one image in both train.txt and val.txt; the user is told.
  assert any(VOC_ID in warning for warning in report['warnings'])


def test_gzip_output_reads_back_with_gzip_compression(tmp_path):
  output = tmp_path / 'gz'

  assert (
    run_cli('--input', NUCLEI, '--output', output, '--num-classes', 2, '--gzip', '--shards', 2) == 0
  )

  shards = sorted((output / 'train').iterdir())
  assert [path.name for path in shards] == [
    'data-00000-of-00002.tfrecord.gz',
    'data-00001-of-00002.tfrecord.gz',
  ]
  assert all(path.read_bytes()[:2] == b'\x1f\x8b' for path in shards)  # gzip magic number
  assert len(read_records(output / 'train', compression='GZIP')) == 12
  assert len(read_records(output / 'eval', compression='GZIP')) == 4


# --- output safety ----------------------------------------------------------------------------------


def test_existing_output_is_kept_unless_overwrite(tmp_path):
  output = tmp_path / 'out'
  assert run_cli('--input', NUCLEI, '--output', output, '--num-classes', 2) == 0
  first_report = (output / 'conversion_report.json').read_bytes()

  assert run_cli('--input', NUCLEI, '--output', output, '--num-classes', 2, '--shards', 2) == 1
  assert (output / 'conversion_report.json').read_bytes() == first_report
  assert [path.name for path in (output / 'train').iterdir()] == ['data-00000-of-00001.tfrecord']

  assert (
    run_cli('--input', NUCLEI, '--output', output, '--num-classes', 2, '--shards', 2, '--overwrite')
    == 0
  )
  assert sorted(path.name for path in (output / 'train').iterdir()) == [
    'data-00000-of-00002.tfrecord',
    'data-00001-of-00002.tfrecord',
  ]
  assert sorted(path.name for path in tmp_path.iterdir()) == ['out']  # No staging folders left.


def test_overwrite_never_deletes_a_folder_that_is_not_a_conversion(tmp_path):
  output = tmp_path / 'precious'
  output.mkdir()
  (output / 'notes.txt').write_text('keep me')

  with pytest.raises(ConversionError, match='not the output of an earlier conversion'):
    convert(NUCLEI, output, num_classes=2, overwrite=True)

  assert (output / 'notes.txt').read_text() == 'keep me'


# --- bad input --------------------------------------------------------------------------------------


def build_broken_corpus(root: Path) -> dict:
  """A flat images/ + masks/ folder: two valid pairs and one of each problem.

  Returns {stem: (file at fault, relative to root; words the reason must contain)} for the bad ones.
  """
  images, masks = root / 'images', root / 'masks'
  images.mkdir(parents=True)
  masks.mkdir()
  rng = np.random.default_rng(0)
  noise = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
  class_ids = np.array([[0, 1, 255, 1]] * 8 * 2, np.uint8).reshape(8, 8)
  good_mask = encoded(Image.fromarray(class_ids))
  files = {
    'images/good.png': encoded(Image.new('L', (8, 8), 100)),
    'images/rgba.png': encoded(Image.new('RGBA', (8, 8), (10, 20, 30, 128))),
    'images/truncated_png.png': encoded(noise)[:1500],
    'images/truncated_jpeg.jpg': encoded(noise, 'JPEG')[:600],
    'images/random_bytes.png': rng.bytes(700),
    'images/zero_size.png': b'',
    'images/wrong_size.png': encoded(Image.new('L', (8, 8))),
    'masks/wrong_size.png': encoded(Image.new('L', (8, 6))),
    'images/out_of_range.png': encoded(Image.new('L', (8, 8))),
    'masks/out_of_range.png': encoded(Image.fromarray(np.where(class_ids == 1, 7, class_ids))),
    'images/sixteen_bit.png': encoded(Image.fromarray(np.full((8, 8), 40000, np.uint16))),
    'images/rgb_mask.png': encoded(Image.new('RGB', (8, 8))),
    'masks/rgb_mask.png': encoded(Image.new('RGB', (8, 8), (128, 0, 0))),
    'images/image_only.png': encoded(Image.new('L', (8, 8))),
    'masks/mask_only.png': good_mask,
    # Two images for one mask: writing either would hide the other, so neither is written.
    'images/twins.png': encoded(Image.new('L', (8, 8))),
    'images/twins.jpg': encoded(Image.new('L', (8, 8)), 'JPEG'),
    # Above twice Pillow's limit it raises; between the limit and twice it only warns.
    'images/bomb_error.png': png_declaring_size(20_000, 20_000),
    'images/bomb_warning.png': png_declaring_size(10_000, 10_000),
  }
  paired_with_good_mask = [
    'good',
    'rgba',
    'truncated_png',
    'truncated_jpeg',
    'random_bytes',
    'zero_size',
    'sixteen_bit',
    'bomb_error',
    'bomb_warning',
    'twins',
  ]
  for stem in paired_with_good_mask:
    files[f'masks/{stem}.png'] = good_mask
  for name, data in files.items():
    (root / name).write_bytes(data)
  assert Image.open(io.BytesIO(files['images/sixteen_bit.png'])).mode == 'I;16'
  return {
    'truncated_png': ('images/truncated_png.png', 'cannot decode image'),
    'truncated_jpeg': ('images/truncated_jpeg.jpg', 'cannot decode image'),
    'random_bytes': ('images/random_bytes.png', 'cannot decode image'),
    'zero_size': ('images/zero_size.png', 'empty file'),
    'wrong_size': ('masks/wrong_size.png', 'mask is 6x8 (HxW) but its image wrong_size.png is 8x8'),
    'out_of_range': ('masks/out_of_range.png', 'class ids [7] out of range'),
    'sixteen_bit': ('images/sixteen_bit.png', '16-bit PNG'),
    'rgb_mask': ('masks/rgb_mask.png', 'mask has 3 channels'),
    'image_only': ('images/image_only.png', 'image without mask'),
    'mask_only': ('masks/mask_only.png', 'mask without image'),
    'bomb_error': ('images/bomb_error.png', 'decompression bomb'),
    'bomb_warning': ('images/bomb_warning.png', 'decompression bomb'),
    'twins': ('images/twins.jpg', "several images share the stem 'twins'"),
  }


def test_every_broken_input_is_reported_with_file_and_reason(tmp_path):
  corpus = tmp_path / 'corpus'
  expected_skips = build_broken_corpus(corpus)
  stems = {path.stem for path in corpus.glob('*/*')}

  report = convert(corpus, tmp_path / 'out', num_classes=2, eval_fraction=0.5)

  skipped = {Path(skip['file']).stem: skip for skip in report['skipped']}
  assert len(skipped) == len(report['skipped'])  # Each bad input is listed once.
  assert set(skipped) == set(expected_skips)
  for stem, (file, words) in expected_skips.items():
    assert skipped[stem]['file'] == file
    assert words in skipped[stem]['reason'], skipped[stem]
  assert report['inputs'] == len(stems)
  assert_inputs_accounted_for(report)
  records = by_filename(
    read_records(tmp_path / 'out' / 'train') + read_records(tmp_path / 'out' / 'eval')
  )
  assert set(records) == {'images/good.png', 'images/rgba.png'}
  rgba = records['images/rgba.png']
  assert rgba[data_format.IMAGE_CHANNELS] == 4
  assert rgba[data_format.IMAGE_ENCODED] == (corpus / 'images' / 'rgba.png').read_bytes()


def test_strict_fails_on_broken_input_and_leaves_no_output(tmp_path, capsys):
  corpus = tmp_path / 'corpus'
  expected_skips = build_broken_corpus(corpus)

  exit_code = run_cli(
    '--input', corpus, '--output', tmp_path / 'out', '--num-classes', 2, '--strict'
  )

  assert exit_code != 0
  assert sorted(path.name for path in tmp_path.iterdir()) == ['corpus']
  errors = capsys.readouterr().err
  assert all(file in errors for file, _ in expected_skips.values())


def test_nothing_valid_is_a_failure_with_no_output(tmp_path):
  corpus = tmp_path / 'corpus'
  (corpus / 'images').mkdir(parents=True)
  (corpus / 'masks').mkdir()
  (corpus / 'images' / 'a.png').write_bytes(b'')
  (corpus / 'masks' / 'a.png').write_bytes(encoded(Image.new('L', (4, 4))))

  assert run_cli('--input', corpus, '--output', tmp_path / 'out', '--num-classes', 2) != 0
  assert not (tmp_path / 'out').exists()
