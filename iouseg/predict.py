"""Segment image files with an exported model through its `serving_default` signature."""

import os
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from transform import data_format


def resolve_saved_model(path: str) -> str:
  """`path` itself if it is a SavedModel, else its highest numbered version (a Pusher's serving dir)."""
  if tf.saved_model.contains_saved_model(path):
    return path
  versions = sorted(
    (d for d in tf.io.gfile.listdir(path) if d.rstrip('/').isdigit()),
    key=lambda d: int(d.rstrip('/')),
  )
  if not versions:
    raise FileNotFoundError(f'{path} is neither a SavedModel nor a folder of numbered versions')
  return os.path.join(path, versions[-1].rstrip('/'))


def serialized_example(image_bytes: bytes) -> bytes:
  """The minimal request `serving_default` needs: the encoded image alone."""
  return tf.train.Example(
    features=tf.train.Features(
      feature={
        data_format.IMAGE_ENCODED: tf.train.Feature(
          bytes_list=tf.train.BytesList(value=[image_bytes])
        )
      }
    )
  ).SerializeToString()


def predict_bytes(signature, image_bytes: bytes) -> np.ndarray:
  """Class ids [H, W] at the image's own resolution."""
  outputs = signature(examples=tf.constant([serialized_example(image_bytes)]))
  height, width = int(outputs['height'][0]), int(outputs['width'][0])
  return outputs['class_ids'][0, :height, :width].numpy()


def predict_files(model_path: str, images: list[str], output_dir: str) -> Iterator[tuple[str, str]]:
  signature = tf.saved_model.load(resolve_saved_model(model_path)).signatures['serving_default']
  os.makedirs(output_dir, exist_ok=True)
  for image in images:
    with open(image, 'rb') as f:
      class_ids = predict_bytes(signature, f.read())
    out = os.path.join(output_dir, os.path.splitext(os.path.basename(image))[0] + '.mask.png')
    with open(out, 'wb') as f:
      f.write(data_format.encode_png(class_ids.astype(np.uint8)))
    yield image, out
