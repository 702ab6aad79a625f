"""Training-split augmentation of transformed batches (image, one-hot label, pixel weight).

Pure TensorFlow ops on whole batches, each example drawing its own parameters from stateless random
ops seeded by (seed, batch index): the same seed gives the same augmented batches, run after run.

Geometric (identical on image, label and weight): a random scale s in [min_scale, max_scale] about
the image, then a random crop (s > 1) or a random placement in padding (s < 1) back to the model
size, then an optional horizontal flip, vertical flip and rotation by k x 90 degrees. All of it is
one affine map per example (`ImageProjectiveTransformV3`, the op of Keras's RandomZoom): the image
is sampled bilinearly; the label, as class ids, and the weight are sampled by nearest neighbour, so
every output pixel takes the class and weight of exactly one input pixel and labels stay one-hot
(no interpolated class mass). Pixels outside the source image get weight 0 and an all-zero label
row, as ignored pixels have. When the map is a mirror (a horizontal or a vertical flip, not both),
the classes of each `flip_swap` pair exchange ids: the left eye of a mirrored face is the right eye.

Photometric (image only): the image is normalised (per-channel zero mean, unit variance over the
train split), so brightness is an added shift in channel standard deviations, contrast a scale of
each image's deviation from its own mean, saturation (3 channels) a scale of each pixel's deviation
from its channel mean, and gamma a power of the image's values mapped to [0, 1] by its own range.
"""

import dataclasses
import math
from typing import Optional

import tensorflow as tf

from trainer import config as trainer_config
from trainer import lateral

# Photometric strengths, on the normalised image.
BRIGHTNESS_DELTA = 0.2  # shift in [-d, d] channel standard deviations
CONTRAST_RANGE = (0.8, 1.25)  # factor on the deviation from the image's mean
SATURATION_RANGE = (0.8, 1.25)  # factor on the deviation from the pixel's channel mean
GAMMA_RANGE = (0.8, 1.25)  # exponent, log-uniform
# What the Trainer augmented with, beside the model (assets.extra/ of the SavedModel): the run
# summary and the model card show it.
RECORD_FILE = 'augmentation.json'


@dataclasses.dataclass(frozen=True)
class AugmentOptions:
  """What `augment_batch` does, every field given: `from_config` resolves the Trainer's
  `AugmentationConfig`, where the defaults live (a scale range of 1 to 1 is no random scale)."""

  min_scale: float
  max_scale: float
  horizontal_flip: bool
  vertical_flip: bool
  rotate90: bool
  photometric: bool
  flip_swap: tuple[tuple[int, int], ...]

  @property
  def geometric(self) -> bool:
    return (
      self.min_scale != 1.0
      or self.max_scale != 1.0
      or self.horizontal_flip
      or self.vertical_flip
      or self.rotate90
    )

  @property
  def enabled(self) -> bool:
    return self.geometric or self.photometric

  @classmethod
  def from_config(cls, config: 'trainer_config.TrainerConfig') -> Optional['AugmentOptions']:
    """The Trainer's augmentation, or None when it does none (`augment` off, or everything off)."""
    settings = config.augmentation
    scales = (settings.min_scale, settings.max_scale) if settings.random_scale else (1.0, 1.0)
    options = cls(
      min_scale=scales[0],
      max_scale=scales[1],
      horizontal_flip=settings.horizontal_flip,
      vertical_flip=settings.vertical_flip,
      rotate90=settings.rotate90,
      photometric=settings.photometric,
      flip_swap=config.flip_swap_pairs,
    )
    return options if settings.augment and options.enabled else None


def _seeds(seed, count: int):
  return tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=count))


def _matrices(rows):
  """[B] tensors a0..b2 -> [B, 3, 3] affine matrices."""
  zeros, ones = tf.zeros_like(rows[0]), tf.ones_like(rows[0])
  return tf.reshape(tf.stack(list(rows) + [zeros, zeros, ones], axis=-1), [-1, 3, 3])


def scaled_window_rows(scale, offset_x, offset_y, zeros) -> list:
  """The first six entries (a0, a1, a2, b0, b1, b2) of the affine map from the pixels of a window
  cut at `offset` out of the image scaled by `scale` to the image's own pixels: window pixel x
  (centre x + 0.5) is point x + 0.5 + offset of the scaled image, point (x + 0.5 + offset) / scale
  of the image (offset < 0: padding). `zeros`: zeros of the entries' shape."""
  return [
    1.0 / scale,
    zeros,
    (0.5 + offset_x) / scale - 0.5,
    zeros,
    1.0 / scale,
    (0.5 + offset_y) / scale - 0.5,
  ]


def _geometry(batch_size, size: int, options: AugmentOptions, seed):
  """(transforms [B, 8] mapping output pixels to input pixels, mirrored [B] bool)."""
  seeds = _seeds(seed, 6)
  shape = [batch_size]
  s = float(size)

  def uniform(k):
    return tf.random.stateless_uniform(shape, seeds[k])

  identity = _matrices(
    [
      tf.ones(shape),
      tf.zeros(shape),
      tf.zeros(shape),
      tf.zeros(shape),
      tf.ones(shape),
      tf.zeros(shape),
    ]
  )
  # Scale, then crop or pad back to size.
  scale = options.min_scale + uniform(0) * (options.max_scale - options.min_scale)
  slack = s * scale - s
  low, high = tf.minimum(slack, 0.0), tf.maximum(slack, 0.0)
  offset_x = low + uniform(1) * (high - low)
  offset_y = low + uniform(2) * (high - low)
  zeros = tf.zeros(shape)
  scaling = _matrices(scaled_window_rows(scale, offset_x, offset_y, zeros))
  # Symmetries of the output grid, applied to output coordinates first.
  symmetry = identity
  mirrored = tf.zeros(shape, tf.bool)
  last = s - 1.0
  if options.horizontal_flip:
    flip = uniform(3) < 0.5
    sign = tf.where(flip, -1.0, 1.0)
    symmetry = _matrices([sign, zeros, tf.where(flip, last, 0.0), zeros, tf.ones(shape), zeros])
    mirrored = tf.math.logical_xor(mirrored, flip)
  if options.vertical_flip:
    flip = uniform(4) < 0.5
    sign = tf.where(flip, -1.0, 1.0)
    symmetry = tf.matmul(
      symmetry, _matrices([tf.ones(shape), zeros, zeros, zeros, sign, tf.where(flip, last, 0.0)])
    )
    mirrored = tf.math.logical_xor(mirrored, flip)
  if options.rotate90:
    # k quarter turns of the square grid: (x, y) -> (y, S-1-x) applied k times (no mirror).
    turns = tf.constant(
      [
        [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
        [[0, 1, 0], [-1, 0, last], [0, 0, 1]],
        [[-1, 0, last], [0, -1, last], [0, 0, 1]],
        [[0, -1, last], [1, 0, 0], [0, 0, 1]],
      ],
      tf.float32,
    )
    k = tf.random.stateless_uniform(shape, seeds[5], maxval=4, dtype=tf.int32)
    symmetry = tf.matmul(symmetry, tf.gather(turns, k))
  transform = tf.matmul(scaling, symmetry)
  return tf.reshape(transform, [-1, 9])[:, :8], mirrored


def warp(images, transforms, size, interpolation: str, fill_mode: str = 'CONSTANT'):
  """images [B, H, W, C] resampled by `transforms` [B, 8] (output pixel -> input pixel) to
  [B, size, size, C], or [B, rows, cols, C] for `size` (rows, cols); fill 0."""
  rows, cols = (size, size) if isinstance(size, int) else size
  warped = tf.raw_ops.ImageProjectiveTransformV3(
    images=images,
    transforms=transforms,
    output_shape=tf.constant([rows, cols], tf.int32),
    fill_value=tf.constant(0.0, images.dtype),
    interpolation=interpolation,
    fill_mode=fill_mode,
  )
  return tf.ensure_shape(warped, [images.shape[0], rows, cols, images.shape[-1]])


def _swap_table(num_classes: int, pairs) -> tf.Tensor:
  """Lookup over ids + 1 (0: no class): each pair's ids exchanged."""
  table = list(range(num_classes + 1))
  for left, right in pairs:
    table[left + 1], table[right + 1] = right + 1, left + 1
  return tf.constant(table, tf.int32)


def geometric(image, label, weight, options: AugmentOptions, seed):
  """The geometric part: image [B, S, S, C], one-hot label [B, S, S, K], weight [B, S, S]."""
  size, num_classes = image.shape[1], label.shape[-1]
  if size is None or image.shape[2] != size:
    raise ValueError(f'augmentation needs square images of static size, not {image.shape}')
  transforms, mirrored = _geometry(tf.shape(image)[0], size, options, seed)
  ids = class_ids_plus_one(label)
  if options.flip_swap:
    swapped = tf.gather(_swap_table(num_classes, options.flip_swap), ids)
    ids = tf.where(mirrored[:, None, None], swapped, ids)
  return warp_aligned(image, ids, weight, transforms, size, label)


def class_ids_plus_one(label):
  """One-hot [B, H, W, K] -> int32 [B, H, W]: class id + 1, 0 where the row is all zero (ignored)."""
  return tf.where(
    tf.reduce_sum(label, axis=-1) > 0, tf.cast(tf.argmax(label, axis=-1), tf.int32) + 1, 0
  )


def warp_aligned(image, ids, weight, transforms, size: int, label):
  """image [B, H, W, C], `class_ids_plus_one` ids and weight [B, H, W] -> (image, one-hot label,
  weight) [B, size, size, ...] by the affine `transforms` [B, 8] (output pixel -> input pixel);
  `label` gives the class count and dtype. Any H x W (`trainer.crops` samples its crops of a larger
  image the same way, reading only the crop's pixels)."""
  num_classes = label.shape[-1]
  # Ids, weights and an in-image indicator travel together through one nearest-neighbour warp
  # (exact in float32); outside the source image all three are 0.
  nearest = warp(
    tf.stack(
      [tf.cast(ids, tf.float32), tf.cast(weight, tf.float32), tf.ones_like(weight, tf.float32)],
      axis=-1,
    ),
    transforms,
    size,
    'NEAREST',
  )
  label = tf.one_hot(
    tf.cast(tf.round(nearest[..., 0]), tf.int32) - 1, num_classes, dtype=label.dtype
  )
  weight = tf.cast(nearest[..., 1], weight.dtype)
  # Bilinear with the border repeated, so a pixel inside by the nearest rule (up to half a pixel
  # beyond the last centre) blends no fill value in; outside the image it is 0 (the channel mean).
  image = warp(image, transforms, size, 'BILINEAR', fill_mode='NEAREST')
  image = tf.where(nearest[..., 2:] > 0, image, tf.zeros_like(image))
  return image, label, weight


def photometric(image, seed):
  """Brightness, contrast, gamma and (3 channels) saturation, per example, on a normalised image."""
  seeds = _seeds(seed, 4)
  channels = image.shape[-1]

  def per_image(k, low, high):
    return tf.random.stateless_uniform([tf.shape(image)[0], 1, 1, 1], seeds[k], low, high)

  dtype = image.dtype
  x = tf.cast(image, tf.float32)
  x += per_image(0, -BRIGHTNESS_DELTA, BRIGHTNESS_DELTA)
  mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
  x = mean + (x - mean) * per_image(1, *CONTRAST_RANGE)
  if channels == 3:
    grey = tf.reduce_mean(x, axis=-1, keepdims=True)
    x = grey + (x - grey) * per_image(2, *SATURATION_RANGE)
  low = tf.reduce_min(x, axis=[1, 2, 3], keepdims=True)
  span = tf.maximum(tf.reduce_max(x, axis=[1, 2, 3], keepdims=True) - low, 1e-6)
  gamma = tf.exp(per_image(3, math.log(GAMMA_RANGE[0]), math.log(GAMMA_RANGE[1])))
  x = low + span * tf.pow((x - low) / span, gamma)
  return tf.cast(x, dtype)


def augment_batch(image, label, weight, options: AugmentOptions, seed):
  """One augmented batch; `seed` is a [2] integer tensor (stateless ops)."""
  geometric_seed, photometric_seed = _seeds(seed, 2)
  if options.geometric:
    image, label, weight = geometric(image, label, weight, options, geometric_seed)
  if options.photometric:
    image = photometric(image, photometric_seed)
  return image, label, weight


def augment_dataset(
  dataset: tf.data.Dataset, options: AugmentOptions | None, seed: int, make_batch=None
) -> tf.data.Dataset:
  """`dataset` of (image, label, weight) batches, augmented batch by batch: batch i with the
  stateless seed (seed, i). Deterministic: the map keeps order. `make_batch`, when given, first makes
  each element of `dataset` into its (image, label, weight) batch in the same parallel map: one
  stage holding decoded batches instead of two (at 512 px and 21 classes a batch of 4 is 100 MB).
  Without `make_batch` and `options` the dataset is returned unchanged."""
  if make_batch is None:
    if options is None:
      return dataset

    def make_batch(batch):
      return batch

  if options is None:
    return dataset.map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return dataset.enumerate().map(
    lambda index, element: augment_batch(
      *make_batch(element), options, tf.stack([tf.cast(seed, tf.int64), index])
    ),
    num_parallel_calls=tf.data.AUTOTUNE,
    deterministic=True,
  )


def describe(config: 'trainer_config.TrainerConfig') -> str:
  """The train split's augmentation in one line, with the classes a mirror swaps, e.g.
  'horizontal flip; a mirror swaps left_lung<->right_lung'; 'none' when there is none."""
  options = AugmentOptions.from_config(config)
  if options is None:
    return 'none'
  parts = []
  if options.min_scale != 1.0 or options.max_scale != 1.0:
    parts.append(f'random scale {options.min_scale:g} to {options.max_scale:g}')
  mirrors = [
    name
    for name, on in (
      ('horizontal flip', options.horizontal_flip),
      ('vertical flip', options.vertical_flip),
    )
    if on
  ]
  parts += mirrors
  if options.rotate90:
    parts.append('quarter turns')
  if options.photometric:
    parts.append('photometric')
  text = ', '.join(parts)
  if mirrors:
    swapped = lateral.pair_text(options.flip_swap, config.data.names)
    text += f'; a mirror swaps {swapped}' if swapped else '; a mirror swaps no classes'
  if config.augmentation.flip_swap.strip().lower() == lateral.NO_SWAP:
    text += f' (flip_swap {lateral.NO_SWAP}: the lateral-class check is off)'
  return text
