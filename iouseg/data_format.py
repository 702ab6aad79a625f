"""The project's record format: one `tf.train.Example` per image, DeepLab/TF-models feature names.

Every producer (demo data, `iouseg convert`) writes records with `make_example`, and every consumer
(Transform, the serving signature, tests) reads the names defined here, so the format lives in one place.
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


def make_example(image_bytes: bytes, image_format: str, height: int, width: int, channels: int,
                 filename: str, mask_png: bytes):
  """A `tf.train.Example` in the project's format.

  Args:
    image_bytes: the encoded image, PNG or JPEG, as read from disk (never re-encoded, so no loss).
    image_format: 'png' or 'jpeg'.
    height, width, channels: the decoded image's shape.
    filename: where the image came from; errors name records by it.
    mask_png: a single-channel PNG of class ids, same height and width as the image.
  """
  import tensorflow as tf
  return tf.train.Example(features=tf.train.Features(feature={
      IMAGE_ENCODED: _bytes(image_bytes),
      IMAGE_FORMAT: _bytes(image_format.encode()),
      IMAGE_HEIGHT: _int(height),
      IMAGE_WIDTH: _int(width),
      IMAGE_CHANNELS: _int(channels),
      IMAGE_FILENAME: _bytes(filename.encode()),
      MASK_ENCODED: _bytes(mask_png),
      MASK_FORMAT: _bytes(b'png'),
  }))
