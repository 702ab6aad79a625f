"""Raw TFRecords -> in-memory (image, one-hot label, weight) arrays, without a TFX run.

The same decode, resize, normalise and one-hot steps as the Transform (it calls the Transform's own
functions; the per-channel statistics come from the train arrays, as TFT's full pass does). Used
where a whole pipeline is too slow for the question: loss comparisons, the input-pipeline benchmark's
in-memory limit and the training-quality test.
"""

import numpy as np
import tensorflow as tf

from transform import data_format
from transform.config import TransformConfig
from transform.preprocessing import VARIANCE_EPSILON, decode_image, decode_mask


def load_split(file_pattern: str, config: TransformConfig):
  """(images float32 [N, S, S, C] in [0, 255], masks int32 [N, S, S]) of every record matched."""
  spec = data_format.raw_feature_spec((data_format.IMAGE_ENCODED, data_format.MASK_ENCODED))
  images, masks = [], []
  for serialized in tf.data.TFRecordDataset(tf.io.gfile.glob(file_pattern)):
    raw = tf.io.parse_single_example(serialized, spec)
    images.append(decode_image(raw[data_format.IMAGE_ENCODED], config).numpy())
    masks.append(decode_mask(raw[data_format.MASK_ENCODED], config).numpy())
  return np.stack(images), np.stack(masks)


def to_model_inputs(images, masks, mean, std, config: TransformConfig):
  """Normalised images, one-hot labels (ignored pixels all-zero) and pixel weights."""
  ignored = masks == config.ignore_label
  labels = np.eye(config.num_classes, dtype=np.float32)[np.where(ignored, 0, masks)]
  labels[ignored] = 0.0
  return ((images - mean) / std).astype(np.float32), labels, (~ignored).astype(np.float32)


def load_train_eval(train_pattern: str, eval_pattern: str, config: TransformConfig):
  """((x, y, w) train, (x, y, w) eval), both normalised with the train split's statistics."""
  train_images, train_masks = load_split(train_pattern, config)
  eval_images, eval_masks = load_split(eval_pattern, config)
  pixels = train_images.reshape(-1, config.channels)
  mean, std = pixels.mean(0), np.sqrt(pixels.var(0) + VARIANCE_EPSILON)
  return (
    to_model_inputs(train_images, train_masks, mean, std, config),
    to_model_inputs(eval_images, eval_masks, mean, std, config),
  )
