"""Dataset-level IoU from a confusion matrix: the definition every metric in the project reduces to.

`confusion_matrices_tf` is the TF twin of `confusion_matrix`, one matrix per example: the exported
model's `evaluation_sums` signature counts each eval image with it, and TFMA adds the counts up.
"""

import numpy as np
import tensorflow as tf


def confusion_matrix(
  true_ids: np.ndarray, pred_ids: np.ndarray, valid: np.ndarray, num_classes: int
) -> np.ndarray:
  """[num_classes, num_classes] counts of valid pixels: rows ground truth, columns prediction."""
  t = true_ids[valid].astype(np.int64)
  p = pred_ids[valid].astype(np.int64)
  counts = np.bincount(t * num_classes + p, minlength=num_classes**2)
  return counts.reshape(num_classes, num_classes)


def confusion_matrices_tf(true_ids, pred_ids, valid, num_classes: int):
  """int64 [B, num_classes, num_classes] counts of each example of a batch [B, ...] (rows ground
  truth, columns prediction, pixels where `valid` only): one bincount over the whole batch."""
  batch = tf.shape(true_ids)[0]
  cells = num_classes * num_classes
  example = tf.reshape(tf.range(batch, dtype=tf.int64), [-1] + [1] * (len(true_ids.shape) - 1))
  index = example * cells + tf.cast(true_ids, tf.int64) * num_classes + tf.cast(pred_ids, tf.int64)
  index = tf.boolean_mask(tf.broadcast_to(index, tf.shape(true_ids, out_type=tf.int64)), valid)
  size = tf.cast(batch, tf.int64) * cells
  counts = tf.math.bincount(index, minlength=size, maxlength=size, dtype=tf.int64)
  return tf.reshape(counts, [batch, num_classes, num_classes])


def per_class_iou(matrix: np.ndarray) -> np.ndarray:
  """TP / (TP + FP + FN) per class; NaN for a class absent from both labels and predictions."""
  tp = np.diag(matrix).astype(np.float64)
  denominator = matrix.sum(axis=0) + matrix.sum(axis=1) - tp
  with np.errstate(invalid='ignore', divide='ignore'):
    return np.where(denominator > 0, tp / denominator, np.nan)


def mean_iou(matrix: np.ndarray) -> float:
  """Mean over the classes in labels or predictions (absent classes do not drag it to 0)."""
  iou = per_class_iou(matrix)
  return float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float('nan')
