"""trainer/augment.py: the train split's augmentation keeps image, label and weight aligned, labels
exact, lateral classes swapped on mirroring, batches repeatable for a seed, the eval split
untouched.

Tiny tensors in-process. The alignment checks encode each pixel's position: in the image (row,
column as channel values) and in the label (one class per pixel), so an output pixel's class names
the input pixel its label came from and its image value must be that pixel's position, to within the
half pixel that bilinear sampling moves against nearest.
"""

import numpy as np
import pytest
import tensorflow as tf

from trainer import augment
from trainer.config import AugmentationConfig, TrainerConfig, parse_flip_swap

from helpers import fit_arguments

S = 16
# AugmentOptions has no defaults: what a test leaves out is off (scale range 1 to 1: no scaling).
NOTHING = dict(
  min_scale=1.0,
  max_scale=1.0,
  horizontal_flip=False,
  vertical_flip=False,
  rotate90=False,
  photometric=False,
  flip_swap=(),
)


def _options(**overrides) -> augment.AugmentOptions:
  return augment.AugmentOptions(**{**NOTHING, **overrides})


ALL_GEOMETRY = _options(
  min_scale=0.5, max_scale=2.0, horizontal_flip=True, vertical_flip=True, rotate90=True
)
FLIP_ONLY = dict(horizontal_flip=True)
# Scaling, horizontal flip and photometric together.
EVERYTHING = _options(min_scale=0.5, max_scale=2.0, horizontal_flip=True, photometric=True)


def _positions(batch: int = 32):
  """(image [B,S,S,3]: row, column, 0; label [B,S,S,S*S]: one-hot of row*S + column; weight 1)."""
  rows, cols = np.meshgrid(np.arange(S), np.arange(S), indexing='ij')
  image = np.stack([rows, cols, np.zeros_like(rows)], -1).astype(np.float32)
  label = np.eye(S * S, dtype=np.float32)[rows * S + cols]
  return (
    np.repeat(image[None], batch, 0),
    np.repeat(label[None], batch, 0),
    np.ones((batch, S, S), np.float32),
  )


def _augment(batch, options, seed=(0, 1)):
  return tuple(
    t.numpy()
    for t in augment.augment_batch(*map(tf.constant, batch), options, tf.constant(seed, tf.int64))
  )


def test_image_label_and_weight_stay_aligned_under_every_geometric_transform():
  image, label, weight = _augment(_positions(), ALL_GEOMETRY)
  row_sums = label.sum(-1)
  assert set(np.unique(label)) <= {0.0, 1.0} and set(np.unique(row_sums)) <= {0.0, 1.0}
  inside = row_sums > 0
  # Padding (scales < 1) occurred, with weight 0 and zero labels exactly there; and so did crops.
  assert inside.mean() < 0.95 and np.array_equal(weight > 0, inside)
  assert set(np.unique(weight)) <= {0.0, 1.0}
  assert np.all(image[~inside] == 0.0)
  source = label.argmax(-1)
  assert np.abs(image[..., 0] - source // S)[inside].max() <= 0.5 + 1e-4
  assert np.abs(image[..., 1] - source % S)[inside].max() <= 0.5 + 1e-4
  # A pixel keeps one class: no class mass spread by interpolation.
  assert np.all(label.max(-1)[inside] == 1.0)


def test_ignored_pixels_stay_ignored_and_labels_stay_exact():
  image, _, weight = _positions(16)
  image[..., :2] += 1.0  # positions from 1, so that 0 marks pixels from outside the image
  rng = np.random.default_rng(0)
  label = np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(16, S, S))]
  ignored = rng.uniform(size=(16, S, S)) < 0.2
  label[ignored], weight[ignored] = 0.0, 0.0
  out_image, out_label, out_weight = _augment((image, label, weight), ALL_GEOMETRY)
  assert set(np.unique(out_label.sum(-1))) <= {0.0, 1.0}
  assert np.array_equal(out_label.sum(-1) > 0, out_weight > 0)
  # Bilinear sampling of a position ramp gives the sampled position; rounded, it is the pixel the
  # nearest-neighbour label and weight were taken from (ties at half a pixel left out).
  from_image = out_image[..., 0] > 0
  position = out_image[..., :2] - 1.0
  clear = from_image & np.all(np.abs(position % 1.0 - 0.5) > 1e-3, axis=-1)
  rows, cols = (np.round(position[..., k]).astype(int).clip(0, S - 1) for k in (0, 1))
  batch = np.arange(16)[:, None, None]
  assert clear.sum() > 0.5 * from_image.sum() and not from_image.all()
  assert np.array_equal(out_label[clear], label[batch, rows, cols][clear])
  assert np.array_equal(out_weight[clear], weight[batch, rows, cols][clear])
  assert np.all(out_weight[~from_image] == 0) and np.all(out_label[~from_image] == 0)


def _mirrored_columns(image) -> np.ndarray:
  """[B] whether each (scale 1) example's column channel runs right to left."""
  return image[:, 0, 0, 1] > image[:, 0, -1, 1]


def test_horizontal_flip_swaps_lateral_classes():
  image, _, weight = _positions(32)
  left_right = np.zeros((32, S, S), np.int64)
  left_right[:, :, S // 2 :] = 2
  left_right[:, :, : S // 2] = 1  # class 1 'left' on the left, class 2 'right' on the right
  label = np.eye(3, dtype=np.float32)[left_right]
  batch = (image, label, weight)
  swapped = _augment(batch, _options(**FLIP_ONLY, flip_swap=((1, 2),)))
  plain = _augment(batch, _options(**FLIP_ONLY))
  mirrored = _mirrored_columns(swapped[0])
  assert 0 < mirrored.sum() < 32
  # With the swap the left of every image is still 'left'; without it mirrored images disagree.
  assert np.array_equal(swapped[1], label)
  assert np.array_equal(plain[1][mirrored], label[mirrored][:, :, ::-1])
  assert np.array_equal(plain[1][~mirrored], label[~mirrored])


def test_vertical_flip_is_a_mirror_and_a_quarter_turn_is_not():
  image, _, weight = _positions(32)
  label = np.eye(3, dtype=np.float32)[np.full((32, S, S), 1)]
  vertical = _augment((image, label, weight), _options(vertical_flip=True, flip_swap=((1, 2),)))
  upside_down = vertical[0][:, 0, 0, 0] > vertical[0][:, -1, 0, 0]
  assert 0 < upside_down.sum() < 32
  assert np.all(vertical[1][upside_down].argmax(-1) == 2)
  assert np.all(vertical[1][~upside_down].argmax(-1) == 1)
  turned = _augment((image, label, weight), _options(rotate90=True, flip_swap=((1, 2),)))
  assert not np.array_equal(turned[0], image)
  assert np.all(turned[1].argmax(-1) == 1)


def test_photometric_changes_the_image_only():
  batch = _positions(8)
  image, label, weight = _augment(batch, _options(photometric=True))
  assert np.array_equal(label, batch[1]) and np.array_equal(weight, batch[2])
  assert not np.allclose(image, batch[0]) and np.all(np.isfinite(image))


def _dataset(seed: int, options):
  rng = np.random.default_rng(0)
  image = rng.normal(size=(24, S, S, 3)).astype(np.float32)
  label = np.eye(3, dtype=np.float32)[rng.integers(0, 3, size=(24, S, S))]
  batches = (
    tf.data.Dataset.from_tensor_slices((image, label, np.ones((24, S, S), np.float32)))
    .shuffle(24, seed=seed)
    .repeat()
    .batch(8)
  )
  augmented = augment.augment_dataset(batches, options, seed)
  return [tuple(t.numpy() for t in b) for b in augmented.take(4)]


def test_same_seed_same_batches_other_seed_other_batches():
  first, again, other = (_dataset(seed, EVERYTHING) for seed in (3, 3, 4))
  assert all(np.array_equal(a, b) for x, y in zip(first, again) for a, b in zip(x, y))
  assert not np.array_equal(first[0][0], other[0][0])
  # Each batch draws its own parameters: one batch repeated comes out different each time.
  repeated = augment.augment_dataset(
    tf.data.Dataset.from_tensors(tuple(map(tf.constant, _positions(4)))).repeat(), EVERYTHING, 3
  )
  images = [batch[0].numpy() for batch in repeated.take(2)]
  assert not np.array_equal(images[0], images[1])


def test_no_options_is_no_augmentation():
  assert _dataset(3, None)[0][0].shape == (8, S, S, 3)
  dataset = tf.data.Dataset.range(3)
  assert augment.augment_dataset(dataset, None, 0) is dataset
  assert augment.AugmentOptions.from_config(TrainerConfig.from_flat(augment=False)) is None
  assert (
    augment.AugmentOptions.from_config(
      TrainerConfig.from_flat(random_scale=False, horizontal_flip=False, photometric=False)
    )
    is None
  )


def test_config_maps_to_options():
  options = augment.AugmentOptions.from_config(
    TrainerConfig.from_flat(
      num_classes=6,
      random_scale=True,
      min_scale=0.75,
      max_scale=1.5,
      horizontal_flip=False,
      vertical_flip=True,
      photometric=True,
      flip_swap='1:2, class_3:class_4',
    )
  )
  assert options == augment.AugmentOptions(0.75, 1.5, False, True, False, True, ((1, 2), (3, 4)))
  # The defaults: horizontal flip only (docs/training.md#the-training-recipe), from
  # AugmentationConfig, the one place that holds them.
  assert TrainerConfig().augmentation == AugmentationConfig()
  assert augment.AugmentOptions.from_config(TrainerConfig()) == _options(horizontal_flip=True)
  assert (
    augment.AugmentOptions.from_config(TrainerConfig.from_flat(min_scale=0.75)).min_scale == 1.0
  )


@pytest.mark.parametrize('text', ['left:right', '1:1', '1:4', '1:2,2:3', '1-2'])
def test_flip_swap_rejects_what_it_cannot_map(text):
  with pytest.raises(ValueError):
    parse_flip_swap(text, 4)
  with pytest.raises(ValueError):
    TrainerConfig.from_flat(flip_swap=text)


def test_trainer_augments_the_train_split_only(monkeypatch, tmp_path):
  """`run_fn`'s wiring: make_dataset gets the config's options for train and none for eval."""
  calls = []

  def fake_make_dataset(pattern, _, batch_size, seed, shuffle=True, cache_mib=0, augmentation=None):
    calls.append((pattern, shuffle, augmentation))
    rng = np.random.default_rng(seed)
    data = (
      rng.normal(size=(4, 16, 16, 3)).astype(np.float32),
      np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(4, 16, 16))],
      np.ones((4, 16, 16), np.float32),
    )
    return tf.data.Dataset.from_tensor_slices(data).repeat().batch(batch_size)

  config = TrainerConfig.from_flat(
    image_size=16, base_filters=4, depth=1, batch_size=2, vertical_flip=True
  )
  fit_arguments(monkeypatch, tmp_path, config, fake_make_dataset, ['train*'], ['eval*'], 4)
  assert [(pattern, shuffle) for pattern, shuffle, _ in calls] == [
    (['train*'], True),
    (['eval*'], False),
  ]
  assert calls[0][2] == augment.AugmentOptions.from_config(config) and calls[0][2].vertical_flip
  assert calls[1][2] is None
