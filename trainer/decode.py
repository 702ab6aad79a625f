"""From per-class sigmoid probabilities to one class id per pixel.

Channel 0 is background. A sigmoid head scores every class independently, so the background channel
is not a competitor to be beaten in an argmax: with the soft IoU loss it saturates near 1.0 on every
pixel (background covers most of an image) and an argmax then paints the whole image background.
Foreground classes are scored by their own sigmoids and thresholded: a pixel takes the most
probable foreground class when that class is confident (probability >= threshold) and is background
otherwise. The same rule runs in the model (TF), in TFMA's metric and in the tests (numpy).
"""

import numpy as np
import tensorflow as tf

FOREGROUND_THRESHOLD = 0.5


def class_ids_tf(probabilities, threshold: float = FOREGROUND_THRESHOLD):
  """[..., C] probabilities -> [...] int32 class ids."""
  foreground = probabilities[..., 1:]
  best = tf.cast(tf.argmax(foreground, axis=-1), tf.int32) + 1
  confident = tf.reduce_max(foreground, axis=-1) >= threshold
  return tf.where(confident, best, tf.zeros_like(best))


def class_ids_np(probabilities: np.ndarray, threshold: float = FOREGROUND_THRESHOLD) -> np.ndarray:
  """numpy twin of `class_ids_tf`."""
  foreground = probabilities[..., 1:]
  best = np.argmax(foreground, axis=-1).astype(np.int32) + 1
  confident = np.max(foreground, axis=-1) >= threshold
  return np.where(confident, best, 0).astype(np.int32)


def labels_to_class_ids_np(one_hot: np.ndarray) -> tuple:
  """One-hot labels [..., C] -> (class ids [...], valid mask [...]); all-zero rows are ignored pixels."""
  return np.argmax(one_hot, axis=-1).astype(np.int32), one_hot.sum(axis=-1) > 0
