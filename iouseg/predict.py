"""Segment image files with an exported model through its `masks` signature.

`masks` is what batch inference runs: a PNG of class ids at the image's own size, decoded from the
probabilities inside the model (band by band when it slides), so a large image costs its class ids
rather than every pixel's probabilities. Each file is checked first by the converter's rules (`transform.image_checks`); a bad one is named
with its reason and passed over, the others are segmented, and `iouseg predict` exits 1 when any
file failed: one bad file among many should cost its own mask, not everyone's, and the exit status
still tells a script that the output is incomplete."""

import os
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from components import serving_dir
from trainer import export
from transform import data_format, image_checks


def resolve_saved_model(path: str) -> str:
  """`path` itself if it is a SavedModel, else its highest complete numbered version (a Pusher's
  serving dir: a push's staging dir or a numbered folder without `saved_model.pb` is passed over)."""
  if tf.saved_model.contains_saved_model(path):
    return path
  version = serving_dir.newest_complete_version(path)
  if version is None:
    raise FileNotFoundError(
      f'{path} is neither a SavedModel nor a folder of numbered versions holding one'
    )
  return os.path.join(path, version)


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
  """Class ids [H, W] at the image's own resolution from a `serving_default` signature (what a TF
  Serving client reads out of its response)."""
  outputs = signature(examples=tf.constant([serialized_example(image_bytes)]))
  height, width = int(outputs['height'][0]), int(outputs['width'][0])
  return outputs['class_ids'][0, :height, :width].numpy()


def read_checked(image: str) -> bytes:
  """The file's bytes, or `image_checks.BadFile` naming the file and why it cannot be segmented
  (unreadable, empty, not a PNG or JPEG, undecodable, a channel count other than 1, 3 or 4): the
  converter's rules and words."""
  try:
    with open(image, 'rb') as f:
      data = f.read()
  except OSError as error:
    raise image_checks.BadFile(image, f'cannot read file: {error.strerror}') from None
  image_checks.image_from_bytes(image, data)
  return data


def mask_png(signature, image_bytes: bytes) -> bytes:
  """The PNG of the image's class ids at its own size from a `masks` signature; ValueError with
  the signature's reason where it could not segment the image."""
  outputs = signature(examples=tf.constant([serialized_example(image_bytes)]))
  error = outputs[export.ERROR][0, 0].numpy().decode()
  if error:
    raise ValueError(error)
  return outputs[export.MASKS][0, 0].numpy()


def load_signature(model_path: str, inference: str | None = None):
  """The model's `masks`, or with `inference` ('whole' or 'slide') its `masks` of that mode, which
  only a model trained with `--resize none` has (ValueError otherwise)."""
  signatures = tf.saved_model.load(resolve_saved_model(model_path)).signatures
  if inference is None:
    return signatures[export.MASKS_SIGNATURE]
  name = export.masks_signature(inference)
  if name not in signatures:
    raise ValueError(
      f'--inference {inference}: the model has no {name} signature; only a model trained with '
      '--resize none predicts whole images or by sliding window'
    )
  return signatures[name]


def predict_files(
  signature, images: list[str], output_dir: str
) -> Iterator[tuple[str, str | None, str | None]]:
  """(image, mask written, None) per image segmented by `signature` (`load_signature`), (image,
  None, reason) per image that was not: a bad file is named and passed over, and the others are
  still written."""
  os.makedirs(output_dir, exist_ok=True)
  for image in images:
    try:
      png = mask_png(signature, read_checked(image))
    except image_checks.BadFile as bad:
      yield image, None, bad.reason
      continue
    except ValueError as error:  # Pillow reads it, the model's check of the image does not
      yield image, None, f'the model cannot read it: {error}'
      continue
    except tf.errors.InvalidArgumentError as error:  # it passed that check, but not its decoding
      yield image, None, f'the model cannot read it: {error.message.splitlines()[0]}'
      continue
    out = os.path.join(output_dir, os.path.splitext(os.path.basename(image))[0] + '.mask.png')
    with open(out, 'wb') as f:
      f.write(png)
    yield image, out, None
