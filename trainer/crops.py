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

Image, label and weight go through one affine resampling, `augment.warp_aligned`'s: the image
bilinear, label and weight nearest-neighbour, so every crop pixel takes the class and weight of
exactly one source pixel. The crop reads only its own pixels of the label and weight (`_cut_once`):
a crop of 256 px covers 1/12 of a 1024x768 image on average, and the class ids, weights and
indicator of the whole image that `warp_aligned` warps cost more than the rest of the cut.

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


def _nearest_sources(transform, height, width, size: int):
  """int32 ([size] rows, [size] columns): the source row of each crop row and the source column of
  each crop column that `ImageProjectiveTransformV3`'s nearest rule reads for `transform` (an
  axis-aligned map: a row's source depends on its row alone), -1 outside the image.

  The op itself warps a column (then a row) of source indices: its own float32 arithmetic and
  rounding pick them, so they are the very pixels `augment.warp_aligned` would sample, ties
  included, for the cost of 2 x `size` pixels instead of the image's ids, weights and indicator."""
  zero = tf.zeros([])
  # The other axis maps every crop pixel to source row (column) 0 of a one-pixel-wide image.
  column_map = tf.stack([transform[0], transform[1], transform[2], zero, zero, zero, zero, zero])
  row_map = tf.stack([zero, zero, zero, transform[3], transform[4], transform[5], zero, zero])

  def sources(length, image_shape, transform, output):
    ids = tf.reshape(tf.range(1, length + 1, dtype=tf.float32), image_shape)  # 0: outside
    picked = augment.warp(ids, transform[None], output, 'NEAREST')
    return tf.cast(tf.reshape(picked, [size]), tf.int32) - 1

  rows = sources(height, [1, -1, 1, 1], row_map, (size, 1))
  columns = sources(width, [1, 1, -1, 1], column_map, (1, size))
  return rows, columns


def _cut_once(image, label, weight, options: CropOptions, seed):
  """One crop, as `augment.warp_aligned` cuts it from the whole image (the same pixels, bit for
  bit), reading only the crop's pixels of label and weight: the one-hot rows of the source pixels
  are gathered as they are (an exact one-hot row or an all-zero ignored one), no ids of the whole
  image. The image's bilinear warp reads only the pixels it blends."""
  shape = tf.shape(image)
  transform = crop_transform(shape[0], shape[1], options, seed)
  rows, columns = _nearest_sources(transform, shape[0], shape[1], options.size)
  inside = (rows >= 0)[:, None] & (columns >= 0)[None, :]

  def off_image_zero(crop):  # padding: weight 0, no class, image 0 (the channel mean)
    return tf.where(
      tf.reshape(inside, [options.size, options.size] + [1] * (crop.shape.rank - 2)),
      crop,
      tf.zeros_like(crop),
    )

  def nearest(tensor):
    return off_image_zero(
      tf.gather(tf.gather(tensor, tf.maximum(rows, 0)), tf.maximum(columns, 0), axis=1)
    )

  # Bilinear with the border repeated, as `warp_aligned` samples the image.
  warped = augment.warp(image[None], transform[None], options.size, 'BILINEAR', fill_mode='NEAREST')
  return off_image_zero(warped[0]), nearest(label), nearest(weight)


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
