"""Segmentation losses for a sigmoid head over one-hot labels.

`soft_iou_loss` is the loss of Rahman & Wang (ISVC 2016) as written in the seed post: with sigmoid
outputs X and one-hot labels Y, I = sum(X*Y), U = sum(X + Y - X*Y), loss = 1 - I/U, summed over the
whole batch (every pixel of every image and every class channel at once).

All losses take `sample_weight` of shape [B, H, W] (or broadcastable to it): pixels of weight 0 (the
ignore label) count in neither sum.
"""
import tensorflow as tf

from trainer.config import LOSS_NAMES

# Added to I and U so that a batch in which neither labels nor predictions cover any pixel (all
# ignore, or all zero) gives loss 0 instead of 0/0 = NaN; at 1.0 it is one pixel's worth of mass,
# negligible against the thousands of pixels of a real batch, and the gradient stays finite.
SOFT_IOU_EPSILON = 1.0

def _pixel_weights(y_true, sample_weight):
  """Per-pixel weights [B, H, W, 1] to multiply into per-class terms."""
  if sample_weight is None:
    return tf.ones_like(y_true[..., :1])
  weight = tf.cast(sample_weight, y_true.dtype)
  return tf.reshape(weight, tf.concat([tf.shape(y_true)[:-1], [1]], axis=0))


def _intersection_union(y_true, y_pred, sample_weight, axis):
  y_true = tf.cast(y_true, tf.float32)
  y_pred = tf.cast(y_pred, tf.float32)  # Mixed precision: sum in float32.
  w = _pixel_weights(y_true, sample_weight)
  intersection = tf.reduce_sum(w * y_pred * y_true, axis=axis)
  union = tf.reduce_sum(w * (y_pred + y_true - y_pred * y_true), axis=axis)
  return intersection, union


def soft_iou_loss(y_true, y_pred, sample_weight=None):
  """The seed's batch-level soft IoU loss: 1 - (I + eps) / (U + eps), a scalar."""
  intersection, union = _intersection_union(y_true, y_pred, sample_weight, axis=None)
  return 1.0 - (intersection + SOFT_IOU_EPSILON) / (union + SOFT_IOU_EPSILON)


def soft_iou_per_class_loss(y_true, y_pred, sample_weight=None):
  """1 - mean over classes of each class's soft IoU, each class summed over the whole batch."""
  intersection, union = _intersection_union(y_true, y_pred, sample_weight, axis=[0, 1, 2])
  return 1.0 - tf.reduce_mean((intersection + SOFT_IOU_EPSILON) / (union + SOFT_IOU_EPSILON))


def sigmoid_cross_entropy_loss(y_true, y_pred, sample_weight=None):
  """Per-channel binary cross-entropy of the sigmoid head, averaged over weighted pixels."""
  y_true = tf.cast(y_true, tf.float32)
  y_pred = tf.clip_by_value(tf.cast(y_pred, tf.float32), 1e-7, 1.0 - 1e-7)
  w = _pixel_weights(y_true, sample_weight)
  bce = -(y_true * tf.math.log(y_pred) + (1.0 - y_true) * tf.math.log(1.0 - y_pred))
  channels = tf.cast(tf.shape(y_true)[-1], tf.float32)
  return tf.reduce_sum(w * bce) / tf.maximum(tf.reduce_sum(w) * channels, 1.0)


def get_loss(name: str):
  """The loss function for a `--loss` flag value."""
  if name == 'soft_iou':
    return soft_iou_loss
  if name == 'soft_iou_per_class':
    return soft_iou_per_class_loss
  if name == 'cross_entropy':
    return sigmoid_cross_entropy_loss
  if name == 'cross_entropy+soft_iou':
    def cross_entropy_plus_soft_iou(y_true, y_pred, sample_weight=None):
      return (sigmoid_cross_entropy_loss(y_true, y_pred, sample_weight) +
              soft_iou_loss(y_true, y_pred, sample_weight))
    return cross_entropy_plus_soft_iou
  raise ValueError(f'unknown loss {name!r}; choose one of {", ".join(LOSS_NAMES)}')
