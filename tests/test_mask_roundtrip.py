"""Property: image/mask files -> `iouseg convert` -> TFRecord -> Transform keeps every mask pixel.

At the model's own size the nearest-neighbour resize is the identity, so the one-hot labels must
give back exactly the mask: each class id as its one-hot row, each ignore pixel as an all-zero row
with weight 0.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from iouseg import converters
from transform import data_format, features
from transform.config import TransformConfig
from transform.preprocessing import preprocessing_fn

IGNORE = data_format.DEFAULT_IGNORE_LABEL

# A Transform run through Beam for each of hypothesis' examples.
pytestmark = pytest.mark.slow


@st.composite
def image_mask_pairs(draw):
  size = draw(st.integers(4, 24))
  num_classes = draw(st.integers(2, 6))
  channels = draw(st.sampled_from([1, 3]))
  shape = (size, size) if channels == 1 else (size, size, 3)
  image = draw(hnp.arrays(np.uint8, shape))
  mask = draw(
    hnp.arrays(
      np.uint8, (size, size), elements=st.sampled_from(list(range(num_classes)) + [IGNORE])
    )
  )
  return image, mask, num_classes, channels


def _transform(serialized, config: TransformConfig, temp_dir):
  spec = data_format.raw_feature_spec()
  raw = {k: v.numpy() for k, v in tf.io.parse_single_example(serialized, spec).items()}
  with tft_beam.Context(temp_dir=temp_dir):
    (rows, _), _ = (
      [raw],
      tft.DatasetMetadata.from_feature_spec(spec),
    ) | tft_beam.AnalyzeAndTransformDataset(
      lambda inputs: preprocessing_fn(inputs, vars(config)), output_record_batches=False
    )
  return rows[0]


@settings(
  max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pair=image_mask_pairs())
def test_masks_survive_conversion_and_transform_exactly(pair, tmp_path_factory):
  image, mask, num_classes, channels = pair
  root = tmp_path_factory.mktemp('pair')
  for folder, array in (('images', image), ('masks', mask)):
    (root / 'in' / 'train' / folder).mkdir(parents=True)
    Image.fromarray(array).save(root / 'in' / 'train' / folder / 'x.png')
  report = converters.convert(root / 'in', root / 'out', num_classes=num_classes, strict=True)
  assert report['splits']['train']['records'] == 1
  (serialized,) = list(tf.data.TFRecordDataset(tf.io.gfile.glob(str(root / 'out/train/*'))))
  size = mask.shape[0]
  row = _transform(serialized, TransformConfig(size, channels, num_classes), str(root / 'tft'))
  label = np.asarray(row[features.LABEL]).reshape(size, size, num_classes)
  weight = np.asarray(row[features.WEIGHT]).reshape(size, size)
  expected = np.eye(num_classes, dtype=np.float32)[np.where(mask == IGNORE, 0, mask)]
  expected[mask == IGNORE] = 0.0
  np.testing.assert_array_equal(label, expected)
  np.testing.assert_array_equal(weight, (mask != IGNORE).astype(np.float32))
