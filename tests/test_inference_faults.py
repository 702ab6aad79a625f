"""Every inference path names bad input and still segments the rest.

- The `masks` signature's check (`export.image_errors`), on real image bytes: good PNG/JPEG of 1, 3
  and 4 channels pass; an empty, truncated, corrupt, non-image or 2-channel image gets its reason.
- Batch inference (LocalDagRunner, real BulkInferrer and MaskWriter): good records mixed with bad
  ones in one TFRecord file; each bad record gets an index.csv row naming it and the reason, every
  good one its mask (equal to `iouseg predict`'s), and the run summary counts the failures.
- `iouseg predict` (the console script) on good files and bad ones: the bad are named with their
  reason on stderr, the good are written, the exit status is 1.
"""

import csv
import io
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from components import mask_writer
from iouseg import predict, run_summary
from trainer import export

from helpers import encoded, recorded_artifacts, run_tiny_pipeline, unlabelled_record

NAME = 'inference_faults'


def _rgb(height=24, width=20, seed=0):
  return np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)


def _two_channel() -> bytes:
  return encoded(Image.fromarray(np.zeros((16, 16, 2), np.uint8), mode='LA'))


def _corrupt(png: bytes) -> bytes:
  """The PNG with its image data (past the header chunk) overwritten: the frame is intact."""
  data = bytearray(png)
  data[40:-20] = bytes(len(data) - 60)
  return bytes(data)


GOOD = {
  'rgb.png': encoded(_rgb()),
  'gray.png': encoded(_rgb()[..., 0]),
  'rgba.png': encoded(np.dstack([_rgb(), np.full((24, 20), 255, np.uint8)])),
  'photo.jpg': encoded(_rgb(30, 26), 'JPEG'),
}
BAD = {
  'empty.png': b'',
  'truncated.png': encoded(_rgb(seed=1))[:60],
  'corrupt.png': _corrupt(encoded(_rgb(40, 40, seed=2))),
  'notes.txt.png': b'not an image at all',
  'two_channels.png': _two_channel(),
}


def test_signature_check_names_each_bad_image():
  errors = export.image_errors(tf.constant(list(GOOD.values()) + list(BAD.values()))).numpy()
  found = dict(zip(list(GOOD) + list(BAD), (e.decode() for e in errors)))
  assert all(found[name] == '' for name in GOOD), found
  for name in ('empty.png', 'truncated.png', 'corrupt.png', 'notes.txt.png'):
    assert found[name] == export.UNDECODABLE, (name, found[name])
  assert found['two_channels.png'] == 'the image has 2 channels, expected 1, 3 or 4'


@pytest.fixture(scope='module')
def run(tiny_demo_data, tmp_path_factory):
  base = tmp_path_factory.mktemp('inference_faults')
  folder = base / 'unlabelled'
  os.makedirs(folder)
  names = sorted({**GOOD, **BAD})
  # One file, good and bad interleaved: they travel in the same Beam bundles and model batches.
  with tf.io.TFRecordWriter(str(folder / 'part-0.tfrecord')) as writer:
    for name in names:
      writer.write(unlabelled_record({**GOOD, **BAD}[name], name))
    writer.write(unlabelled_record(b'', None))  # no file name either: named by its image's hash
    writer.write(tf.train.Example().SerializeToString())  # no image/encoded at all
  metadata = run_tiny_pipeline(
    base, tiny_demo_data, NAME, train_steps=8, infer_data_root=str(folder)
  )
  return base, metadata


def _index(masks_uri: str) -> list[dict]:
  with open(os.path.join(masks_uri, mask_writer.INDEX_FILE), newline='') as f:
    reader = csv.DictReader(f)
    assert reader.fieldnames == list(mask_writer.INDEX_HEADER)
    return list(reader)


@pytest.mark.e2e
def test_bad_records_are_named_in_the_index_and_the_rest_get_their_masks(run):
  base, metadata = run
  _, outputs, _ = recorded_artifacts(metadata, 'MaskWriter')
  masks = outputs['masks'][0]
  rows = _index(masks.uri)
  by_record = {row['record']: row for row in rows}
  empty_sha = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
  # The two records without a name have the same (empty) image: one row for that name.
  assert set(by_record) == set(GOOD) | set(BAD) | {empty_sha}
  for name in BAD:
    row = by_record[name]
    assert row['mask'] == '' and row['height'] == '' and row['width'] == '', row
    assert row['error'], row
  # The converter's words where Pillow says more than the graph could.
  assert by_record['empty.png']['error'] == 'empty image (0 bytes)'
  assert by_record[empty_sha]['error'] == 'empty image (0 bytes)'
  assert by_record['notes.txt.png']['error'].startswith('cannot decode image: not an image format')
  assert by_record['truncated.png']['error'].startswith('cannot decode image')
  assert by_record['two_channels.png']['error'] == (
    "unsupported image mode 'LA' (expected grayscale, RGB or RGBA)"
  )
  assert by_record['corrupt.png']['error']

  signature = tf.saved_model.load(predict.resolve_saved_model(str(base / 'serving'))).signatures[
    'serving_default'
  ]
  for name, image in GOOD.items():
    row = by_record[name]
    assert row['error'] == ''
    with Image.open(os.path.join(masks.uri, row['mask'])) as png:
      mask = np.asarray(png)
    with Image.open(io.BytesIO(image)) as source:
      assert mask.shape == (source.height, source.width) == (int(row['height']), int(row['width']))
    np.testing.assert_array_equal(mask, predict.predict_bytes(signature, image), err_msg=name)

  assert masks.get_int_custom_property(mask_writer.MASK_COUNT_KEY) == len(GOOD)
  assert masks.get_int_custom_property(mask_writer.FAILED_COUNT_KEY) == len(BAD) + 1
  assert sorted(os.listdir(os.path.join(masks.uri, mask_writer.MASKS_DIR))) == sorted(
    os.path.splitext(name)[0] + '.mask.png' for name in GOOD
  )
  text = run_summary.format_summary(run_summary.latest_run(metadata, NAME))
  assert f'Masks: {len(GOOD)} written to {masks.uri} (index.csv); {len(BAD) + 1} records not ' in (
    text
  )


@pytest.mark.e2e
def test_iouseg_predict_names_bad_files_writes_the_rest_and_exits_1(run, tmp_path):
  base, _ = run
  files = []
  for name, data in {**GOOD, **BAD}.items():
    (tmp_path / name).write_bytes(data)
    files.append(str(tmp_path / name))
  files.append(str(tmp_path / 'missing.png'))
  script = shutil.which('iouseg', path=os.path.dirname(sys.executable))
  result = subprocess.run(
    [script, 'predict', '--model', str(base / 'serving'), '--output', str(tmp_path / 'out')]
    + files,
    env={**os.environ, 'TF_USE_LEGACY_KERAS': '1'},
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert result.returncode == 1, result.stdout + result.stderr
  assert 'Traceback' not in result.stderr
  lines = [line for line in result.stderr.splitlines() if ': not segmented: ' in line]
  named = {line.split(': not segmented: ')[0]: line.split(': not segmented: ')[1] for line in lines}
  assert set(named) == {str(tmp_path / name) for name in BAD} | {str(tmp_path / 'missing.png')}
  assert named[str(tmp_path / 'missing.png')] == 'cannot read file: No such file or directory'
  assert named[str(tmp_path / 'empty.png')] == 'empty image (0 bytes)'
  assert f'{len(BAD) + 1} of {len(files)} images not segmented' in result.stderr
  assert sorted(os.listdir(tmp_path / 'out')) == sorted(
    os.path.splitext(name)[0] + '.mask.png' for name in GOOD
  )
  for name in GOOD:
    assert f'{tmp_path / name} -> ' in result.stdout
