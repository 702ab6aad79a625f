"""`preprocessing_fn` run through TFT's Beam implementation on a few hand-made records."""

import io

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from PIL import Image

from transform import data_format, features
from transform.config import TransformConfig
from transform.preprocessing import preprocessing_fn

RAW_SPEC = data_format.raw_feature_spec()
CONFIG = TransformConfig(image_size=24, channels=3, num_classes=3, ignore_label=255)


def _record(seed, mask_values=(0, 1, 2, 255), gray=False):
  """A 48x48 image and a mask of constant 2x2 blocks, so a 2x nearest downsample is exact."""
  rng = np.random.default_rng(seed)
  blocks = rng.choice(mask_values, size=(24, 24)).astype(np.uint8)
  mask = np.kron(blocks, np.ones((2, 2), dtype=np.uint8))
  image = rng.integers(0, 256, size=(48, 48) if gray else (48, 48, 3)).astype(np.uint8)
  return (
    {
      data_format.IMAGE_ENCODED: data_format.encode_png(image),
      data_format.MASK_ENCODED: data_format.encode_png(mask),
      data_format.IMAGE_FILENAME: f'record-{seed}.png'.encode(),
    },
    blocks,
    image,
  )


def _transform(records, tmp_path, config=CONFIG):
  metadata = tft.DatasetMetadata.from_feature_spec(RAW_SPEC)
  with tft_beam.Context(temp_dir=str(tmp_path)):
    (transformed, _), _ = (records, metadata) | tft_beam.AnalyzeAndTransformDataset(
      lambda inputs: preprocessing_fn(inputs, vars(config)), output_record_batches=False
    )
  return transformed


def test_one_hot_labels_weights_and_normalised_images(tmp_path):
  records, expected_masks, images = zip(*[_record(s, gray=(s == 2)) for s in range(4)])
  out = _transform(list(records), tmp_path)
  assert len(out) == 4
  for row, mask in zip(out, expected_masks):
    label = np.asarray(row[features.LABEL]).reshape(24, 24, 3)
    weight = np.asarray(row[features.WEIGHT]).reshape(24, 24)
    ignored = mask == 255
    # Nearest-neighbour resize: the class ids are exactly the source blocks, none interpolated.
    np.testing.assert_array_equal(np.argmax(label, -1)[~ignored], mask[~ignored])
    np.testing.assert_array_equal(label.sum(-1), (~ignored).astype(np.float32))
    np.testing.assert_array_equal(weight, (~ignored).astype(np.float32))
    assert set(np.unique(label)) <= {0.0, 1.0}
  pixels = np.stack([np.asarray(r[features.IMAGE]).reshape(24, 24, 3) for r in out]).reshape(-1, 3)
  # Full-pass per-channel statistics: the transformed data set has mean 0 and variance 1.
  np.testing.assert_allclose(pixels.mean(0), 0.0, atol=1e-3)
  np.testing.assert_allclose(pixels.var(0), 1.0, atol=1e-2)


def test_out_of_range_label_fails_naming_the_record(tmp_path):
  records = [_record(0)[0], _record(1, mask_values=(0, 1, 7))[0]]
  with pytest.raises(Exception, match=r'(?s)outside \[0, 3\).*record-1\.png'):
    _transform(records, tmp_path)


def _wide_record(seed, height=24, width=48):
  """An HxW image and a mask of constant 2x2 blocks (exact under a 2x nearest downsample)."""
  rng = np.random.default_rng(seed)
  blocks = rng.choice((0, 1, 2), size=(height // 2, width // 2)).astype(np.uint8)
  image = rng.integers(0, 256, size=(height, width, 3)).astype(np.uint8)
  return {
    data_format.IMAGE_ENCODED: data_format.encode_png(image),
    data_format.MASK_ENCODED: data_format.encode_png(np.kron(blocks, np.ones((2, 2), np.uint8))),
    data_format.IMAGE_FILENAME: f'wide-{seed}.png'.encode(),
  }, blocks


def test_pad_keeps_the_aspect_ratio_and_ignores_the_padding(tmp_path):
  """--resize pad: a 24x48 image in a 24x24 model input is 12x24 of content at the top, then
  padding with weight 0 and no class, left out of the normalisation statistics."""
  records, masks = zip(*[_wide_record(s) for s in range(3)])
  out = _transform(list(records), tmp_path, TransformConfig(24, 3, 3, resize='pad'))
  images = []
  for row, blocks in zip(out, masks):
    label = np.asarray(row[features.LABEL]).reshape(24, 24, 3)
    weight = np.asarray(row[features.WEIGHT]).reshape(24, 24)
    np.testing.assert_array_equal(weight[:12], 1.0)
    np.testing.assert_array_equal(weight[12:], 0.0)
    np.testing.assert_array_equal(label[12:], 0.0)
    np.testing.assert_array_equal(np.argmax(label[:12], -1), blocks)  # the aspect ratio is kept
    images.append(np.asarray(row[features.IMAGE]).reshape(24, 24, 3)[:12])
  pixels = np.stack(images).reshape(-1, 3)
  # Statistics of the content alone: had the padding counted, the content's mean would be > 0.
  np.testing.assert_allclose(pixels.mean(0), 0.0, atol=1e-3)
  np.testing.assert_allclose(pixels.var(0), 1.0, atol=1e-2)


def test_stretch_fills_the_model_input_with_the_whole_image(tmp_path):
  """--resize stretch (the default): a 48x24 image fills the 24x24 model input, halved in height
  and kept in width. The image is `tf.image.resize`'s bilinear (antialiased) resize, normalised with
  the statistics of all the resized images; the mask is the nearest-neighbour one, which on 2x2
  blocks is each block row once and each block column twice."""
  records, masks = zip(*[_wide_record(s, height=48, width=24) for s in range(2)])
  out = _transform(list(records), tmp_path, TransformConfig(24, 3, 3))
  sources = [
    np.asarray(Image.open(io.BytesIO(r[data_format.IMAGE_ENCODED])), np.float32) for r in records
  ]
  assert sources[0].shape == (48, 24, 3)
  resized = np.stack(
    [tf.image.resize(s, [24, 24], method='bilinear', antialias=True).numpy() for s in sources]
  )
  pixels = resized.reshape(-1, 3)
  expected_images = (resized - pixels.mean(0)) / np.sqrt(pixels.var(0))
  for row, blocks, expected_image in zip(out, masks, expected_images):
    label = np.asarray(row[features.LABEL]).reshape(24, 24, 3)
    np.testing.assert_array_equal(np.asarray(row[features.WEIGHT]), 1.0)
    np.testing.assert_array_equal(np.argmax(label, -1), np.repeat(blocks, 2, axis=1))
    np.testing.assert_allclose(
      np.asarray(row[features.IMAGE]).reshape(24, 24, 3), expected_image, atol=1e-4
    )
