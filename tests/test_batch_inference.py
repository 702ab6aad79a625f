"""Batch inference (`OptionalComponents(infer_data_root=...)`, `iouseg run --infer-data`):
unlabelled records -> InferenceExampleGen -> BulkInferrer (the blessed model's `masks` signature)
-> MaskWriter (one class-id PNG per record at the image's own size, index.csv), through
LocalDagRunner.

The masks must be exactly what `iouseg predict` (`predict.predict_bytes`, serving_default) returns
for the same image bytes.
"""

import csv
import glob
import hashlib
import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow_serving.apis import prediction_log_pb2

from components import mask_writer
from iouseg import predict, run_summary
from trainer import export
from transform import data_format

from helpers import TINY_CLASSES, encoded, recorded_artifacts, run_tiny_pipeline, unlabelled_record

NAME = 'batch_inference'


def _demo_images(data_root, count: int):
  """PIL images of the demo eval split (their masks left behind)."""
  images = []
  for record in tf.data.TFRecordDataset(glob.glob(os.path.join(data_root, 'eval', '*'))).take(
    count
  ):
    example = tf.train.Example.FromString(record.numpy())
    image = example.features.feature[data_format.IMAGE_ENCODED].bytes_list.value[0]
    images.append(Image.open(io.BytesIO(image)).convert('RGB'))
  return images


@pytest.fixture(scope='module')
def inference_records(tiny_demo_data, tmp_path_factory):
  """{record name in the index: image bytes}: demo images without masks, at the demo's 48x48 and
  at other sizes (not square, smaller than the model's 32 px), PNG and JPEG, one with no filename,
  two whose file names share a stem."""
  images = _demo_images(tiny_demo_data, 5)
  records = {
    'eval/shapes_0.png': encoded(images[0]),
    'wide_1.png': encoded(images[1].resize((56, 40))),  # 40x56 (HxW)
    'small_2.jpg': encoded(images[2].resize((20, 30)), 'JPEG'),  # 30x20
    'other/shapes_0.png': encoded(images[3].resize((33, 47))),  # the stem of the first
    None: encoded(images[4].resize((64, 24))),
  }
  folder = tmp_path_factory.mktemp('unlabelled')
  with tf.io.TFRecordWriter(str(folder / 'part-0.tfrecord')) as writer:
    for name, image in list(records.items())[:3]:
      writer.write(unlabelled_record(image, name))
  with tf.io.TFRecordWriter(str(folder / 'part-1.tfrecord')) as writer:
    for name, image in list(records.items())[3:]:
      writer.write(unlabelled_record(image, name))
  anonymous = records.pop(None)
  records[f'sha256:{hashlib.sha256(anonymous).hexdigest()}'] = anonymous
  return folder, records


@pytest.fixture(scope='module')
def run(tiny_demo_data, inference_records, tmp_path_factory):
  base = tmp_path_factory.mktemp('batch_inference')
  folder, _ = inference_records
  metadata = run_tiny_pipeline(
    base, tiny_demo_data, NAME, train_steps=8, infer_data_root=str(folder)
  )
  return base, metadata


def _index(masks_uri: str) -> dict:
  with open(os.path.join(masks_uri, mask_writer.INDEX_FILE), newline='') as f:
    reader = csv.DictReader(f)
    rows = list(reader)
    assert reader.fieldnames == list(mask_writer.INDEX_HEADER)
  return {row['record']: row for row in rows}


@pytest.mark.e2e
def test_one_mask_per_record_equal_to_iouseg_predict(run, inference_records):
  base, metadata = run
  _, records = inference_records
  summary = run_summary.latest_run(metadata, NAME)
  assert summary.blessed
  assert {'InferenceExampleGen', 'BulkInferrer', 'MaskWriter'} <= set(summary.component_states)
  _, outputs, _ = recorded_artifacts(metadata, 'MaskWriter')
  masks = outputs['masks'][0]
  assert masks.get_int_custom_property(mask_writer.MASK_COUNT_KEY) == len(records)
  index = _index(masks.uri)
  assert set(index) == set(records)

  signature = tf.saved_model.load(predict.resolve_saved_model(str(base / 'serving'))).signatures[
    'serving_default'
  ]
  for name, image_bytes in records.items():
    row = index[name]
    with Image.open(os.path.join(masks.uri, row['mask'])) as png:
      assert png.mode == 'L'
      mask = np.asarray(png)
    expected = predict.predict_bytes(signature, image_bytes)
    with Image.open(io.BytesIO(image_bytes)) as image:
      assert mask.shape == (image.height, image.width) == (int(row['height']), int(row['width']))
    np.testing.assert_array_equal(mask, expected, err_msg=name)
    assert mask.max() < TINY_CLASSES

  # File names: the stem, as `iouseg predict` names masks; a stem two records share gets each
  # image's hash; a record without image/filename is named by its image's hash.
  assert index['wide_1.png']['mask'] == 'masks/wide_1.mask.png'
  assert index['small_2.jpg']['mask'] == 'masks/small_2.mask.png'
  shared = {index[name]['mask'] for name in ('eval/shapes_0.png', 'other/shapes_0.png')}
  assert shared == {
    f'masks/shapes_0-{hashlib.sha256(records[name]).hexdigest()[:10]}.mask.png'
    for name in ('eval/shapes_0.png', 'other/shapes_0.png')
  }
  anonymous = next(name for name in records if name.startswith('sha256:'))
  assert index[anonymous]['mask'] == f'masks/record-{anonymous[len("sha256:") :][:16]}.mask.png'
  assert 'Masks: 5 written to' in run_summary.format_summary(summary)


@pytest.mark.e2e
def test_bulk_inferrer_logs_carry_pngs_not_probabilities(run):
  """What BulkInferrer writes per record: the `masks` signature's outputs only; nothing float."""
  _, metadata = run
  _, outputs, _ = recorded_artifacts(metadata, 'BulkInferrer')
  files = glob.glob(os.path.join(outputs['inference_result'][0].uri, '*.gz'))
  logs = [
    prediction_log_pb2.PredictionLog.FromString(r.numpy())
    for r in tf.data.TFRecordDataset(files, compression_type='GZIP')
  ]
  assert len(logs) == 5
  for log in logs:
    assert log.predict_log.response.model_spec.signature_name == export.MASKS_SIGNATURE
    tensors = log.predict_log.response.outputs
    assert set(tensors) == {
      export.MASKS,
      export.FILENAME,
      export.HEIGHT,
      export.WIDTH,
      export.ERROR,
    }
    assert tf.make_ndarray(tensors[export.ERROR])[0, 0] == b''  # every record here is good
    assert {tf.dtypes.as_dtype(t.dtype) for t in tensors.values()} <= {tf.string, tf.int32}
    assert tf.io.decode_png(tf.make_ndarray(tensors[export.MASKS])[0, 0]).shape[-1] == 1


@pytest.mark.e2e
def test_not_blessed_no_inference_and_an_empty_index(run, tiny_demo_data, inference_records):
  """Same pipeline root, a threshold nothing reaches: the Evaluator refuses the model (the rest is
  cached), BulkInferrer skips, MaskWriter writes a header-only index and says why."""
  base, _ = run
  metadata = run_tiny_pipeline(
    base,
    tiny_demo_data,
    NAME,
    train_steps=8,
    min_mean_iou=1.1,
    infer_data_root=str(inference_records[0]),
  )
  summary = run_summary.latest_run(metadata, NAME)
  assert summary.blessed is False
  _, outputs, _ = recorded_artifacts(metadata, 'MaskWriter')
  masks = outputs['masks'][0]
  assert masks.get_int_custom_property(mask_writer.MASK_COUNT_KEY) == 0
  assert 'not blessed' in masks.get_string_custom_property(mask_writer.SKIPPED_KEY)
  assert _index(masks.uri) == {}
  assert not glob.glob(os.path.join(masks.uri, mask_writer.MASKS_DIR, '*'))
  assert 'Masks: none, the model was not blessed' in run_summary.format_summary(summary)


# --- the writer's rules, without a pipeline ---------------------------------------------------------


def _entry(ids, record='a.png', height=None, width=None, sha='0' * 64) -> dict:
  ids = np.asarray(ids, np.uint8)
  return dict(
    record=record,
    sha=sha,
    png=data_format.encode_png(ids),
    height=ids.shape[0] if height is None else height,
    width=ids.shape[1] if width is None else width,
  )


def test_check_mask_names_the_record():
  mask_writer.check_mask(_entry([[0, 3], [1, 2]]), num_classes=4)
  with pytest.raises(mask_writer.BadMaskError, match='x.png: the mask holds class id 4'):
    mask_writer.check_mask(_entry([[0, 4]], record='x.png'), num_classes=4)
  with pytest.raises(mask_writer.BadMaskError, match='the mask is 1x2 .* the image is 2x2'):
    mask_writer.check_mask(_entry([[0, 1]], height=2), num_classes=4)
  rgb = dict(_entry([[0]]), png=encoded(np.zeros((1, 1, 3), np.uint8)))
  with pytest.raises(mask_writer.BadMaskError, match='RGB PNG'):
    mask_writer.check_mask(rgb, num_classes=4)


def test_unique_names():
  one = _entry([[0]], 'a/x.png', sha='1' * 64)
  other = _entry([[0]], 'b/x.png', sha='2' * 64)
  assert [name for name, _ in mask_writer.unique_names('x', [one])] == ['x.mask.png']
  assert [name for name, _ in mask_writer.unique_names('x', [other, one, one])] == [
    f'x-{"1" * 10}.mask.png',
    f'x-{"2" * 10}.mask.png',
  ]
  # The same image twice under one name: one file.
  assert len(list(mask_writer.unique_names('x', [one, dict(one)]))) == 1
