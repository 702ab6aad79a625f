"""TensorBoard images of the predicted masks of a few fixed eval examples, written each epoch.

Each example is one image, [input | ground truth | prediction], masks painted in the class colours
of `trainer.colours` (those `iouseg report` uses), in the run `eval_images` beside the TensorBoard
callback's `train` and `validation` runs in the model run dir.
"""

import os

import tensorflow as tf
import tf_keras

from trainer import decode
from trainer.colours import IGNORE_COLOUR, class_colours

IMAGES_RUN = 'eval_images'
IMAGES_TAG = 'predicted_masks'


def _paint(class_ids, ignored, num_classes: int):
  """[N, S, S] ids -> float [N, S, S, 3] in [0, 1]."""
  colours = tf.constant(class_colours(num_classes), tf.float32) / 255.0
  painted = tf.gather(colours, class_ids)
  return tf.where(ignored[..., None], tf.constant(IGNORE_COLOUR, tf.float32) / 255.0, painted)


def _displayable(images):
  """Normalised model inputs -> [0, 1] per image (min-max), grey for one channel."""
  images = tf.cast(images, tf.float32)
  low = tf.reduce_min(images, axis=[1, 2, 3], keepdims=True)
  high = tf.reduce_max(images, axis=[1, 2, 3], keepdims=True)
  images = (images - low) / tf.maximum(high - low, 1e-6)
  return tf.image.grayscale_to_rgb(images) if images.shape[-1] == 1 else images


class PredictedMasks(tf_keras.callbacks.Callback):
  """At the end of each epoch, writes image | truth | prediction for the same eval examples."""

  def __init__(self, log_dir: str, images, labels, num_classes: int):
    super().__init__()
    self._log_dir = os.path.join(log_dir, IMAGES_RUN)
    self._writer = None  # opened by the first write, so a worker that never writes leaves no file
    self._images = images
    self._num_classes = num_classes
    ignored = tf.reduce_sum(labels, axis=-1) == 0  # all-zero one-hot rows: the ignore label
    truth = _paint(tf.cast(tf.argmax(labels, axis=-1), tf.int32), ignored, num_classes)
    self._left = tf.concat([_displayable(images), truth], axis=2)

  @classmethod
  def from_dataset(
    cls, dataset: tf.data.Dataset, log_dir: str, num_classes: int, count: int = 3
  ) -> 'PredictedMasks':
    """The first `count` examples of `dataset`'s first (image, label, weight) batch; an unshuffled
    eval dataset gives the same examples every epoch and every run."""
    images, labels, _ = next(iter(dataset))
    return cls(log_dir, images[:count], labels[:count], num_classes)

  def on_epoch_end(self, epoch, logs=None):
    # With several workers only the chief writes, as Keras' own TensorBoard callback does.
    if not self.model.distribute_strategy.extended.should_save_summary:
      return
    probabilities = tf.cast(self.model(self._images, training=False), tf.float32)
    predicted = _paint(
      decode.class_ids_tf(probabilities),
      tf.zeros(tf.shape(probabilities)[:-1], tf.bool),
      self._num_classes,
    )
    self._writer = self._writer or tf.summary.create_file_writer(self._log_dir)
    with self._writer.as_default():
      tf.summary.image(
        IMAGES_TAG,
        tf.concat([self._left, predicted], axis=2),
        step=epoch,
        max_outputs=int(self._images.shape[0]),
        description='eval example: input | ground truth | prediction',
      )
    self._writer.flush()
