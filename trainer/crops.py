"""Training on crops of images kept at their own size (`--resize none`).

Transform leaves each image at its own size, so records cannot be batched as they come: the Trainer
runs the transform graph on one record at a time and cuts one crop of the model size out of it
(`cut`), and the crops are batched. A train crop is taken at a random scale s in [min_scale,
max_scale] (the augmentation's `--random-scale`, MMSegmentation's and Model Garden's recipe): the
image is scaled by s and a random S x S window of the scaled image is kept, so the crop covers S / s
pixels of the original. The eval split's crop (validation during training, the best-epoch choice) is
the image's centre at scale 1, the same every epoch; the Evaluator scores whole images
(`trainer.inference`). Where the window reaches past the image the crop is padding: weight 0, an
all-zero label row, image 0 (the channel mean), as ignored pixels are.

Image, label and weight go through one affine resampling (`augment.warp_aligned`): the image
bilinear, label ids and weights nearest-neighbour, so every crop pixel takes the class and weight of
exactly one source pixel.

`cat_max_ratio` below 1 (MMSegmentation's `RandomCrop(cat_max_ratio=...)`, `--crop-cat-max-ratio`)
biases train crops away from one class, say pure background: a crop is drawn again, up to
CROP_TRIES crops in all, until it holds more than one class and its largest class covers less than
that fraction of its labelled pixels (the ignore label and the padding, weight 0, count nowhere). When
no draw passes, the last one is kept (MMSegmentation keeps one more draw, unchecked).
"""

import dataclasses

import tensorflow as tf

from trainer import augment
from trainer import config as trainer_config

# How many crops `cut` draws at most for one record when `cat_max_ratio` < 1 (MMSegmentation's 10).
CROP_TRIES = 10


@dataclasses.dataclass(frozen=True)
class CropOptions:
  """One crop per record: `size` x `size`, at a random scale and place (`random`), or the centre;
  a random crop drawn again while one class covers `cat_max_ratio` or more of it (the module's
  docstring; 1: never)."""

  size: int
  min_scale: float = 1.0
  max_scale: float = 1.0
  random: bool = True
  cat_max_ratio: float = 1.0


def train_and_eval_options(config: 'trainer_config.TrainerConfig'):
  """(train CropOptions, eval CropOptions, the train augmentation left to run on the batched
  crops): the random scale moves from the augmentation into the crop (it picks how much of the
  image a crop covers), flips, turns and photometric changes stay."""
  augmentation = augment.AugmentOptions.from_config(config)
  size = config.data.image_size
  # Which window of the image a crop is, not a change of its pixels: it holds without --augment too.
  ratio = config.augmentation.crop_cat_max_ratio
  if augmentation is None:
    return CropOptions(size, cat_max_ratio=ratio), CropOptions(size, random=False), None
  train = CropOptions(size, augmentation.min_scale, augmentation.max_scale, cat_max_ratio=ratio)
  rest = dataclasses.replace(augmentation, min_scale=1.0, max_scale=1.0)
  return train, CropOptions(size, random=False), rest if rest.enabled else None


def _random_offset(length, size: int, scale, draw):
  """The crop's offset in the scaled image along a side of `length` source pixels: anywhere the
  crop stays inside the image, or anywhere the image stays inside the crop when it is the smaller
  (`draw` uniform in [0, 1)); whole steps from the low end, so a crop at scale 1 copies pixels."""
  slack = tf.cast(length, tf.float32) * scale - size
  low, high = tf.minimum(slack, 0.0), tf.maximum(slack, 0.0)
  return low + tf.floor(draw * (tf.floor(high - low) + 1.0))


def crop_transform(height, width, options: CropOptions, seed):
  """float32 [8]: the map from crop pixels to source pixels (`ImageProjectiveTransformV3`'s form)
  for an image of `height` x `width`; `seed` a [2] integer tensor (stateless)."""
  if options.random:
    seeds = tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=3))
    # A scale range of one value draws it (stateless_uniform needs low < high).
    spread = max(options.max_scale - options.min_scale, 0.0)
    scale = options.min_scale + spread * tf.random.stateless_uniform([], seeds[0])
    offset_x = _random_offset(width, options.size, scale, tf.random.stateless_uniform([], seeds[1]))
    offset_y = _random_offset(
      height, options.size, scale, tf.random.stateless_uniform([], seeds[2])
    )
  else:  # the centre at scale 1: the slack split in half, rounded down
    scale = tf.constant(1.0)
    offset_x = tf.floor((tf.cast(width, tf.float32) - options.size) / 2.0)
    offset_y = tf.floor((tf.cast(height, tf.float32) - options.size) / 2.0)
  zero = tf.zeros([])
  return tf.stack(augment.scaled_window_rows(scale, offset_x, offset_y, zero) + [zero, zero])


def _cut_once(image, label, weight, options: CropOptions, seed):
  shape = tf.shape(image)
  transform = crop_transform(shape[0], shape[1], options, seed)
  cropped = augment.warp_aligned(
    image[None],
    augment.class_ids_plus_one(label[None]),
    weight[None],
    transform[None],
    options.size,
    label[None],
  )
  return tuple(tensor[0] for tensor in cropped)


def passes_cat_max_ratio(label, weight, ratio: float):
  """Whether a crop's one-hot label [S, S, K] holds more than one class and its largest covers less
  than `ratio` of the pixels of weight > 0 (MMSegmentation's test)."""
  counts = tf.reduce_sum(label * tf.cast(weight > 0, label.dtype)[..., None], axis=[0, 1])
  several = tf.math.count_nonzero(counts) > 1
  return several & (tf.reduce_max(counts) < ratio * tf.reduce_sum(counts))


def cut(image, label, weight, options: CropOptions, seed):
  """One record at its own size, image [H, W, C], one-hot label [H, W, K], weight [H, W] -> its
  crop, [S, S, C], [S, S, K], [S, S]."""
  first = _cut_once(image, label, weight, options, seed)
  if not options.random or options.cat_max_ratio >= 1:
    return first
  seed = tf.cast(seed, tf.int64)

  def draw_again(tries, _):  # the first draw keeps `seed`: the same crop as without the option
    again = tf.random.experimental.stateless_fold_in(seed, tries)
    return tries + 1, _cut_once(image, label, weight, options, again)

  _, crop = tf.while_loop(
    lambda tries, crop: (
      (tries < CROP_TRIES) & ~passes_cat_max_ratio(crop[1], crop[2], options.cat_max_ratio)
    ),
    draw_again,
    (tf.constant(1, tf.int64), first),
    parallel_iterations=1,
  )
  return crop
