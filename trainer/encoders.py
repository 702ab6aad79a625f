"""Known encoders: MobileNetV2, ResNet-50 and EfficientNet-B0 from `tf_keras.applications` under a
U-Net decoder, with the sigmoid head of `trainer.model` (docs/encoders.md).

The network is `image` -> `encoder_input` (a fixed per-channel affine map, below) -> `encoder` (the
application, `include_top=False, weights=None`, as one nested model whose outputs are its features
at strides 2, 4, 8, 16 and 32) -> a U-Net decoder -> `logits` -> `probabilities`. The decoder
up-samples by two (nearest neighbour), concatenates the encoder's feature of that stride and runs
`trainer.model.conv_block` `base_filters * stride` wide, from stride 16 down to 1: with the default
16 that is segmentation_models' U-Net decoder (256, 128, 64, 32, 16). U-Net rather than FPN or
DeepLabV3+: it is the decoder `fcn` already has (one set of layers to maintain), it uses every skip
at strides 2-16 and its full-resolution last stage keeps thin structures; FPN and ASPP were not
compared here.

Input scale. Transform z-scores each channel with the train split's mean and standard deviation
(transform/preprocessing.py), and those statistics stay inside the transform graph. ImageNet
weights expect `preprocess_input` of 0-255 pixels, i.e. pixels whose per-channel statistics are
ImageNet's. `encoder_input` reads Transform's z-scores as ImageNet z-scores: it maps z to
`preprocess_input(255 * (mean + std * z))` with ImageNet's mean and std, one exact affine map per
channel (plus the BGR order ResNet-50's caffe-mode weights expect), so the first layers see inputs
of the mean and spread they were trained on. A data set whose colours differ from ImageNet's is
therefore given ImageNet's statistics rather than its own raw colours. The map is a non-trainable
1x1 convolution built the same for every run of an encoder, with or without a weights file, so a
model warm-started, resumed or fine-tuned from this project's own encoder weights sees the same
input scale it was trained with, and serving is unchanged.

Other channel counts than 3: channel c takes ImageNet's statistics of RGB channel c % 3 (1 channel:
their mean), and `trainer.encoder_weights` adapts the first convolution's kernel the way
segmentation_models.pytorch's `patch_first_conv` does.
"""

import dataclasses

import numpy as np
import tf_keras
from tf_keras import layers

from trainer import model
from trainer.config import APPLICATION_STRIDE

ENCODER_LAYER = 'encoder'
INPUT_LAYER = 'encoder_input'
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])
# The mean pixel (RGB, 0-255) caffe-mode `preprocess_input` subtracts (not 255 * IMAGENET_MEAN).
CAFFE_MEAN = np.array([123.68, 116.779, 103.939])
# The strides of the encoder's outputs, shallowest first.
STRIDES = (2, 4, 8, 16, APPLICATION_STRIDE)
# The batch norms' moving-average momentum in every encoder: Keras's default, the decoder's.
# MobileNetV2 is built with 0.999, whose moving statistics still hold 78 % of their initial 0 and 1
# after 250 steps: a model trained from random weights for a few hundred steps (a small set) was
# evaluated and served with statistics of nothing it saw (see docs/encoders.md).
BATCH_NORM_MOMENTUM = 0.99


@dataclasses.dataclass(frozen=True)
class Application:
  """One tf_keras application as an encoder.

  builder: its function in `tf_keras.applications`.
  features: the layers whose outputs are its features at `STRIDES`.
  stem: its first convolution (the one that reads the image's channels).
  mode: what its `preprocess_input` does to 0-255 RGB pixels: 'tf' scales to [-1, 1], 'caffe'
    reverses to BGR and subtracts ImageNet's mean, 'raw' leaves them (the model normalises inside,
    in its `normalization` layer).
  """

  builder: str
  features: tuple
  stem: str
  mode: str


APPLICATIONS = {
  'mobilenet_v2': Application(
    'MobileNetV2',
    (
      'block_1_expand_relu',
      'block_3_expand_relu',
      'block_6_expand_relu',
      'block_13_expand_relu',
      'out_relu',
    ),
    'Conv1',
    'tf',
  ),
  'resnet50': Application(
    'ResNet50',
    ('conv1_relu', 'conv2_block3_out', 'conv3_block4_out', 'conv4_block6_out', 'conv5_block3_out'),
    'conv1_conv',
    'caffe',
  ),
  'efficientnet_b0': Application(
    'EfficientNetB0',
    (
      'block2a_expand_activation',
      'block3a_expand_activation',
      'block4a_expand_activation',
      'block6a_expand_activation',
      'top_activation',
    ),
    'stem_conv',
    'raw',
  ),
}


def input_normalization(layer) -> bool:
  """Whether `layer` is EfficientNet's own input normalisation (mode 'raw'; Keras names it
  `normalization`, `normalization_1`, ... in one process): `build_encoder` sets it to ImageNet's
  statistics, and `trainer.encoder_weights` leaves it out of what a file may change."""
  return isinstance(layer, layers.Normalization)


def per_channel(rgb_values: np.ndarray, channels: int) -> np.ndarray:
  """An RGB triple for `channels` channels: channel c takes RGB channel c % 3's value; a single
  channel the mean of the three."""
  if channels == 1:
    return rgb_values.mean(keepdims=True)
  return rgb_values[np.arange(channels) % 3]


def imagenet_statistics(channels: int) -> tuple:
  """(mean, std) of ImageNet's pixels in [0, 1] for each of `channels` channels (`per_channel`)."""
  return per_channel(IMAGENET_MEAN, channels), per_channel(IMAGENET_STD, channels)


def input_map(encoder: str, channels: int) -> tuple:
  """(kernel [1, 1, C, C], bias [C]) of `INPUT_LAYER`: Transform's z-score z of each channel ->
  the application's `preprocess_input(255 * (mean + std * z))` (module docstring)."""
  mean, std = imagenet_statistics(channels)
  scale, offset = 255 * std, 255 * mean  # the 0-255 pixel of z
  order = np.arange(channels)
  mode = APPLICATIONS[encoder].mode
  if mode == 'tf':  # x / 127.5 - 1
    scale, offset = scale / 127.5, offset / 127.5 - 1
  elif mode == 'caffe':  # BGR, minus the mean pixel
    offset = offset - per_channel(CAFFE_MEAN, channels)
    if channels >= 3:
      order[:3] = (2, 1, 0)
  kernel = np.zeros((1, 1, channels, channels), np.float32)
  # Output channel o reads input channel order[o]; its statistics are those of that input channel.
  kernel[0, 0, order, np.arange(channels)] = scale[order]
  return kernel, offset[order].astype(np.float32)


def build_encoder(encoder: str, channels: int, image_size: int | None = None) -> tf_keras.Model:
  """The application `encoder` without its top and with random weights, as a model named
  `ENCODER_LAYER`: [B, S, S, channels] -> its features at `STRIDES`. `image_size` None: any size
  that is a multiple of `APPLICATION_STRIDE`."""
  spec = APPLICATIONS[encoder]
  application = getattr(tf_keras.applications, spec.builder)(
    include_top=False, weights=None, input_shape=(image_size, image_size, channels)
  )
  if spec.mode == 'raw':  # (x / 255 - mean) / std: ImageNet's z-score, as the weights expect
    mean, std = imagenet_statistics(channels)
    (normalization,) = filter(input_normalization, application.layers)
    normalization.set_weights([mean, std**2, np.asarray(0, np.int64)])
  for layer in application.layers:  # read when a train step is traced, not stored as a weight
    if isinstance(layer, layers.BatchNormalization):
      layer.momentum = BATCH_NORM_MOMENTUM
  outputs = [application.get_layer(name).output for name in spec.features]
  return tf_keras.Model(application.input, outputs, name=ENCODER_LAYER)


def build_unet(
  encoder: str,
  image_size: int | None,
  channels: int,
  num_classes: int,
  base_filters: int = 16,
  class_priors=None,
) -> tf_keras.Model:
  """The segmentation network on the application `encoder`: [B, S, S, channels] Transform-normalised
  image -> [B, S, S, num_classes] probabilities, S a multiple of `APPLICATION_STRIDE` (the config's
  check); `image_size` None builds it for any such S."""
  inputs = tf_keras.Input(shape=(image_size, image_size, channels), name='image')
  adapter = layers.Conv2D(channels, 1, trainable=False, name=INPUT_LAYER)
  x = adapter(inputs)
  adapter.set_weights(list(input_map(encoder, channels)))
  features = build_encoder(encoder, channels, image_size)(x)
  x = features[-1]
  for stride, skip in zip(reversed(STRIDES[:-1]), reversed(features[:-1]), strict=True):
    x = layers.UpSampling2D(2, name=f'up{stride}')(x)
    x = layers.Concatenate(name=f'skip{stride}')([x, skip])
    x = model.conv_block(x, base_filters * stride, name=f'dec{stride}')
  x = layers.UpSampling2D(2, name='up1')(x)
  x = model.conv_block(x, base_filters, name='dec1')
  return tf_keras.Model(inputs, model.sigmoid_head(x, num_classes, class_priors), name=encoder)


def build_network(config, class_priors=None) -> tf_keras.Model:
  """The network a `TrainerConfig` asks for: `trainer.model.build_fcn` for encoder 'fcn', else
  `build_unet` on the application."""
  data, settings = config.data, config.model
  if settings.encoder == 'fcn':
    return model.build_fcn(
      data.image_size,
      data.channels,
      data.num_classes,
      settings.base_filters,
      settings.depth,
      class_priors=class_priors,
    )
  return build_unet(
    settings.encoder,
    data.image_size,
    data.channels,
    data.num_classes,
    settings.base_filters,
    class_priors,
  )


def encoder_of(network: tf_keras.Model) -> tf_keras.Model | None:
  """The nested application encoder of a `build_unet` network; None for the FCN."""
  names = {layer.name for layer in network.layers}
  return network.get_layer(ENCODER_LAYER) if ENCODER_LAYER in names else None
