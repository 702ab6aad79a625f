"""A fully-convolutional encoder-decoder with skip connections and a sigmoid head.

FCN-8s fuses coarse, semantic scores with finer encoder features so that boundaries survive the
down-sampling; here every decoder stage up-samples by two and concatenates the encoder stage of the
same resolution (the U-Net form of the same idea), so any input size divisible by 2**depth works
(`trainer.config.TrainerConfig` refuses other sizes).
`base_filters` and `depth` scale it from a CPU demo (16, 3) to a GPU-filling model (64, 5).
"""

from collections.abc import Sequence

import numpy as np
import tf_keras
from tf_keras import layers


def conv_block(x, filters: int, name: str):
  """Two 3x3 convolutions, each with batch norm and ReLU: every stage of the FCN, and each decoder
  stage of the application encoders' U-Net (trainer/encoders.py)."""
  for i in (1, 2):
    x = layers.Conv2D(filters, 3, padding='same', use_bias=False, name=f'{name}_conv{i}')(x)
    x = layers.BatchNormalization(name=f'{name}_bn{i}')(x)
    x = layers.ReLU(name=f'{name}_relu{i}')(x)
  return x


def head_bias(class_priors: Sequence[float] | None):
  """Initial head bias: zeros, or the logit of each class's pixel frequency (`head_init='prior'`,
  the usual start for cross-entropy; see `ModelConfig` for why IoU losses avoid it)."""
  if class_priors is None:
    return 'zeros'
  p = np.clip(np.asarray(class_priors, dtype=np.float64), 1e-4, 1 - 1e-4)
  return tf_keras.initializers.Constant(np.log(p / (1 - p)))


def build_fcn(
  image_size: int,
  channels: int,
  num_classes: int,
  base_filters: int = 16,
  depth: int = 3,
  class_priors: Sequence[float] | None = None,
) -> tf_keras.Model:
  """The segmentation network: [B, S, S, channels] normalised image -> [B, S, S, num_classes]
  probabilities. `image_size` is a multiple of 2**depth (the config's check)."""
  inputs = tf_keras.Input(shape=(image_size, image_size, channels), name='image')
  x = inputs
  skips = []
  for level in range(depth):
    x = conv_block(x, base_filters * 2**level, name=f'enc{level}')
    skips.append(x)
    x = layers.MaxPool2D(name=f'pool{level}')(x)
  x = conv_block(x, base_filters * 2**depth, name='bottleneck')
  for level in reversed(range(depth)):
    x = layers.Conv2DTranspose(base_filters * 2**level, 2, strides=2, name=f'up{level}')(x)
    x = layers.Concatenate(name=f'skip{level}')([x, skips[level]])
    x = conv_block(x, base_filters * 2**level, name=f'dec{level}')
  return tf_keras.Model(inputs, sigmoid_head(x, num_classes, class_priors), name='fcn')


def sigmoid_head(x, num_classes: int, class_priors: Sequence[float] | None = None):
  """Decoder features -> per-class probabilities: the head of every network here (the encoders'
  of trainer/encoders.py too), so losses, metrics and warm start see the same layer names."""
  # float32 head: under mixed precision the sigmoid and the IoU sums stay in full precision.
  logits = layers.Conv2D(
    num_classes, 1, bias_initializer=head_bias(class_priors), dtype='float32', name='logits'
  )(x)
  return layers.Activation('sigmoid', dtype='float32', name='probabilities')(logits)
