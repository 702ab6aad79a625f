"""Keras training metric: mean IoU of the thresholded prediction, ignore pixels excluded."""

import tensorflow as tf
import tf_keras

from trainer import decode


class ThresholdedMeanIoU(tf_keras.metrics.MeanIoU):
  """`tf_keras.metrics.MeanIoU` over class ids decoded with the project's foreground rule.

  Takes one-hot labels [B, H, W, C] (ignored pixels are all-zero rows) and sigmoid probabilities;
  classes absent from both labels and predictions are left out of the mean, as Keras does. Compile
  it as one of `weighted_metrics`: Keras passes `metrics` only its mask, never the dataset's pixel
  weights [B, H, W], which then count each pixel in the confusion matrix.
  """

  def __init__(self, num_classes: int, name: str = 'mean_iou', **kwargs):
    super().__init__(num_classes=num_classes, name=name, **kwargs)

  def update_state(self, y_true, y_pred, sample_weight=None):
    valid = tf.cast(tf.reduce_sum(y_true, axis=-1) > 0, tf.float32)
    if sample_weight is not None:
      valid *= tf.cast(tf.reshape(sample_weight, tf.shape(valid)), tf.float32)
    true_ids = tf.argmax(y_true, axis=-1)
    pred_ids = decode.class_ids_tf(tf.cast(y_pred, tf.float32))
    return super().update_state(true_ids, pred_ids, sample_weight=valid)

  def get_config(self):
    config = super().get_config()
    config.pop('ignore_class', None)
    config.pop('sparse_y_true', None)
    config.pop('sparse_y_pred', None)
    config.pop('axis', None)
    return config
