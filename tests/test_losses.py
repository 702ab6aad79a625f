"""The losses against the seed's formula computed in numpy."""
import numpy as np
import pytest
import tensorflow as tf

from trainer import losses

EPS = losses.SOFT_IOU_EPSILON


def _random_batch(seed, shape=(2, 5, 6, 3)):
  rng = np.random.default_rng(seed)
  probabilities = rng.uniform(size=shape).astype(np.float32)
  one_hot = np.eye(shape[-1], dtype=np.float32)[rng.integers(0, shape[-1], size=shape[:-1])]
  weights = (rng.uniform(size=shape[:-1]) > 0.3).astype(np.float32)
  return one_hot, probabilities, weights


def seed_soft_iou(y, x, w):
  """The seed post's Eq. 1-4 over the whole batch, weights applied per pixel."""
  w = w[..., None]
  inter = np.sum(w * x * y)
  union = np.sum(w * (x + y - x * y))
  return 1.0 - (inter + EPS) / (union + EPS)


def seed_soft_iou_per_class(y, x, w):
  w = w[..., None]
  inter = np.sum(w * x * y, axis=(0, 1, 2))
  union = np.sum(w * (x + y - x * y), axis=(0, 1, 2))
  return 1.0 - np.mean((inter + EPS) / (union + EPS))


@pytest.mark.parametrize('loss_fn, reference', [
    (losses.soft_iou_loss, seed_soft_iou),
    (losses.soft_iou_per_class_loss, seed_soft_iou_per_class),
])
class TestSoftIoU:

  def test_matches_numpy_formula(self, loss_fn, reference):
    for seed in range(5):
      y, x, w = _random_batch(seed)
      np.testing.assert_allclose(loss_fn(y, x, w).numpy(), reference(y, x, w), rtol=1e-5)
      np.testing.assert_allclose(loss_fn(y, x).numpy(), reference(y, x, np.ones_like(w)), rtol=1e-5)

  def test_perfect_prediction_is_zero(self, loss_fn, reference):
    y, _, w = _random_batch(1)
    assert abs(float(loss_fn(y, y, w))) < 1e-6

  def test_weights_mask_pixels(self, loss_fn, reference):
    y, x, w = _random_batch(2)
    garbage = np.where(w[..., None] > 0, x, 1.0 - x)  # change only the ignored pixels
    np.testing.assert_allclose(loss_fn(y, x, w).numpy(), loss_fn(y, garbage, w).numpy(), rtol=1e-6)
    assert abs(float(loss_fn(y, x)) - float(loss_fn(y, garbage))) > 1e-3

  def test_gradient_finite_even_for_empty_batch(self, loss_fn, reference):
    y, x, w = _random_batch(3)
    for weights in (w, np.zeros_like(w)):
      x_var = tf.Variable(x)
      with tf.GradientTape() as tape:
        value = loss_fn(y, x_var, weights)
      grad = tape.gradient(value, x_var).numpy()
      assert np.isfinite(float(value)) and np.all(np.isfinite(grad))
    empty = np.zeros_like(y)
    assert float(loss_fn(empty, empty)) == pytest.approx(0.0)

  def test_better_overlap_gives_lower_loss(self, loss_fn, reference):
    y, x, w = _random_batch(4)
    closer = 0.5 * x + 0.5 * y
    assert float(loss_fn(y, closer, w)) < float(loss_fn(y, x, w))


def test_cross_entropy_matches_numpy_and_respects_weights():
  y, x, w = _random_batch(5)
  bce = -(y * np.log(x) + (1 - y) * np.log(1 - x))
  expected = np.sum(w[..., None] * bce) / (w.sum() * y.shape[-1])
  np.testing.assert_allclose(losses.sigmoid_cross_entropy_loss(y, x, w).numpy(), expected, rtol=1e-5)


def test_get_loss_names_every_flag_value_and_rejects_others():
  y, x, w = _random_batch(6)
  combined = losses.get_loss('cross_entropy+soft_iou')(y, x, w)
  np.testing.assert_allclose(
      combined.numpy(),
      losses.sigmoid_cross_entropy_loss(y, x, w).numpy() + losses.soft_iou_loss(y, x, w).numpy(),
      rtol=1e-6)
  for name in losses.LOSS_NAMES:
    assert np.isfinite(float(losses.get_loss(name)(y, x, w)))
  with pytest.raises(ValueError, match='unknown loss'):
    losses.get_loss('dice')
