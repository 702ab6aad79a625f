"""The Trainer's crop feed (`--resize none`) at its cheaper cost: `trainer.crops.cut` reads only the
crop's pixels of label and weight, and must give exactly the crops the whole-image path gave
(`augment.warp_aligned` on the class ids of the whole one-hot label), bit for bit, for the same
seed: random scales, padding, ignored pixels, ties of the nearest rule and `cat_max_ratio` re-draws.
"""

import numpy as np
import pytest
import tensorflow as tf

from trainer import augment, crops

CLASSES = 5


def _record(height: int, width: int, seed: int):
  """A random image [H, W, 3], one-hot label [H, W, K] with about 10 % ignored (all-zero) rows and
  fractional weights, so a pixel taken from the wrong place shows in all three."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(0, CLASSES, (height, width))
  ignored = rng.random((height, width)) < 0.1
  label = np.eye(CLASSES, dtype=np.float32)[ids] * ~ignored[..., None]
  weight = np.where(ignored, 0.0, rng.uniform(0.5, 1.0, (height, width))).astype(np.float32)
  return rng.normal(size=(height, width, 3)).astype(np.float32), label, weight


def _whole_image_crop(image, label, weight, options, seed):
  """The crop as the feed cut it before: the whole label's ids, weight and an in-image indicator
  warped together (`augment.warp_aligned`)."""
  transform = crops.crop_transform(image.shape[0], image.shape[1], options, seed)
  cropped = augment.warp_aligned(
    image[None],
    augment.class_ids_plus_one(label[None]),
    weight[None],
    transform[None],
    options.size,
    label[None],
  )
  return [tensor[0].numpy() for tensor in cropped]


@pytest.mark.parametrize(
  'height, width, options',
  [
    (97, 130, crops.CropOptions(32, min_scale=0.5, max_scale=2.0)),  # crops and padding
    (40, 24, crops.CropOptions(32)),  # scale 1: copied pixels, padded columns
    (64, 64, crops.CropOptions(32, random=False)),  # the eval split's centre crop
    # Scale 0.5: source point 2x + 2 offset + 0.5, every one a tie of the nearest rule.
    (50, 70, crops.CropOptions(32, min_scale=0.5, max_scale=0.5)),
  ],
)
def test_the_crop_is_bit_for_bit_the_whole_image_paths_crop(height, width, options):
  image, label, weight = _record(height, width, seed=height)
  weightless = 0
  for draw in range(12):
    seed = tf.constant([draw, 3], tf.int64)
    got = [t.numpy() for t in crops.cut(image, label, weight, options, seed)]
    expected = _whole_image_crop(image, label, weight, options, seed)
    for name, a, b in zip(('image', 'label', 'weight'), got, expected):
      np.testing.assert_array_equal(a, b, err_msg=f'{name}, draw {draw}')
    weightless += int((got[2] == 0).sum())
  assert weightless > 0  # weight-0 pixels (ignored or padding) are among those compared


def test_cat_max_ratio_redraws_are_the_whole_image_paths_redraws():
  # Mostly class 0 with one class-1 block: many windows are one class, so crops are drawn again.
  image, _, weight = _record(80, 120, seed=5)
  ids = np.zeros((80, 120), int)
  ids[30:50, 70:100] = 1
  label = np.eye(CLASSES, dtype=np.float32)[ids]
  options = crops.CropOptions(32, min_scale=0.5, max_scale=2.0, cat_max_ratio=0.75)
  redrawn = 0
  for draw in range(10):
    seed = tf.constant([draw, 9], tf.int64)
    got = [t.numpy() for t in crops.cut(image, label, weight, options, seed)]
    # The module's rule, on the whole-image path: the first draw keeps the seed, try t folds t in.
    for tries in range(crops.CROP_TRIES):
      # An int64 count, as the module's loop counts (fold_in draws in the count's dtype).
      count = tf.constant(tries, tf.int64)
      again = seed if tries == 0 else tf.random.experimental.stateless_fold_in(seed, count)
      expected = _whole_image_crop(image, label, weight, options, again)
      if crops.passes_cat_max_ratio(expected[1], expected[2], options.cat_max_ratio):
        break
    redrawn += tries > 0
    for a, b in zip(got, expected):
      np.testing.assert_array_equal(a, b)
  assert redrawn > 0
