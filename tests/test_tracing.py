"""AutoGraph leaves tf_keras's own code alone once the Trainer compiles its model (as TensorFlow
does for `keras`), and still converts our functions: the Python control flow of a loss or an
augmentation keeps working inside a traced step."""
import tensorflow as tf
import tf_keras
from tensorflow.python.autograph.impl import conversion  # pylint: disable=g-direct-tensorflow-import

from trainer import augment, task
from trainer.config import TrainerConfig


def test_compiled_model_stops_autograph_rewriting_tf_keras():
  task.compiled_model(TrainerConfig(num_classes=2, image_size=16, channels=1, depth=1))
  assert conversion.is_allowlisted(tf_keras.layers.Conv2D.call)
  assert conversion.is_allowlisted(tf_keras.Model.train_step)
  assert not conversion.is_allowlisted(augment.augment_batch)


def test_our_python_control_flow_is_still_converted():
  task.compiled_model(TrainerConfig(num_classes=2, image_size=16, channels=1, depth=1))

  @tf.function
  def clipped_sum(x):
    total = tf.constant(0.0)
    for value in x:  # a Python loop over a tensor: only AutoGraph turns it into a tf.while_loop
      if value > 0:
        total += value
    return total

  assert float(clipped_sum(tf.constant([1.0, -2.0, 3.0]))) == 4.0
