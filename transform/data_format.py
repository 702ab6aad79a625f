"""The project's record format: one `tf.train.Example` per image, DeepLab/TF-models feature names.

Every producer (demo data, `iouseg convert`) writes records with `make_example`, and every consumer
(the RecordValidator, Transform, the Trainer's input, the serving signatures, tests) reads the names,
the raw feature spec and the label rules defined here, so the format lives in one place: the bottom
of the package graph, in the stage that reads records first.
"""

import io

import numpy as np
from PIL import Image

IMAGE_ENCODED = 'image/encoded'
IMAGE_FORMAT = 'image/format'
IMAGE_HEIGHT = 'image/height'
IMAGE_WIDTH = 'image/width'
IMAGE_CHANNELS = 'image/channels'
IMAGE_FILENAME = 'image/filename'
MASK_ENCODED = 'image/segmentation/class/encoded'
MASK_FORMAT = 'image/segmentation/class/format'

# Masks hold one class id per pixel; this value marks pixels that count in neither loss nor metrics
# (PASCAL VOC's "void" border).
DEFAULT_IGNORE_LABEL = 255
# Masks are 8-bit, so ids 0..255 cover every value a pixel can hold.
MASK_ID_RANGE = 256


def raw_feature_spec(keys=(IMAGE_ENCODED, MASK_ENCODED, IMAGE_FILENAME)) -> dict:
  """`tf.io.parse_example` spec of the raw features that `keys` names (all scalar bytes)."""
  import tensorflow as tf  # Imported late: the converter's pure-PIL paths should not pay for TF.

  return {key: tf.io.FixedLenFeature([], tf.string) for key in keys}


def check_label_settings(
  num_classes: int, ignore_label: int, names=('num_classes', 'ignore_label')
) -> None:
  """ValueError unless class ids 0..num_classes-1 and the ignore label fit an 8-bit mask without
  colliding; `names` are what the message calls the two settings (e.g. the converter's flags)."""
  classes_name, ignore_name = names
  if not 0 <= ignore_label < MASK_ID_RANGE:
    raise ValueError(f'{ignore_name} must fit an 8-bit mask (0..255), got {ignore_label}')
  if not 1 <= num_classes <= ignore_label:
    raise ValueError(
      f'{classes_name} must be between 1 and the ignore label ({ignore_label}), got {num_classes}'
    )


def encode_png(array: np.ndarray) -> bytes:
  """PNG bytes of an HxW (grayscale / class ids) or HxWxC uint8 array."""
  buf = io.BytesIO()
  Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buf, format='PNG')
  return buf.getvalue()


def _bytes(value: bytes):
  import tensorflow as tf  # Imported late: the converter's pure-PIL paths should not pay for TF.

  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value: int):
  import tensorflow as tf

  return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def make_example(
  image_bytes: bytes,
  image_format: str,
  height: int,
  width: int,
  channels: int,
  filename: str,
  mask_png: bytes,
):
  """A `tf.train.Example` in the project's format.

  Args:
    image_bytes: the encoded image, PNG or JPEG, as read from disk (never re-encoded, so no loss).
    image_format: 'png' or 'jpeg'.
    height, width, channels: the decoded image's shape.
    filename: where the image came from; errors name records by it.
    mask_png: a single-channel PNG of class ids, same height and width as the image.
  """
  import tensorflow as tf

  return tf.train.Example(
    features=tf.train.Features(
      feature={
        IMAGE_ENCODED: _bytes(image_bytes),
        IMAGE_FORMAT: _bytes(image_format.encode()),
        IMAGE_HEIGHT: _int(height),
        IMAGE_WIDTH: _int(width),
        IMAGE_CHANNELS: _int(channels),
        IMAGE_FILENAME: _bytes(filename.encode()),
        MASK_ENCODED: _bytes(mask_png),
        MASK_FORMAT: _bytes(b'png'),
      }
    )
  )
