"""The losses against the paper's formula (trainer/losses.py) computed in numpy."""

import numpy as np
import pytest
import tensorflow as tf

from trainer import losses


def _random_batch(seed, shape=(2, 5, 6, 3)):
  rng = np.random.default_rng(seed)
  probabilities = rng.uniform(size=shape).astype(np.float32)
  one_hot = np.eye(shape[-1], dtype=np.float32)[rng.integers(0, shape[-1], size=shape[:-1])]
  weights = (rng.uniform(size=shape[:-1]) > 0.3).astype(np.float32)
  return one_hot, probabilities, weights


def seed_soft_iou(y, x, w):
  """The paper's Eq. 1-4 over the whole batch, weights applied per pixel: 1 - I/U exactly."""
  w = w[..., None]
  inter = np.sum(w * x * y)
  union = np.sum(w * (x + y - x * y))
  return 1.0 - inter / union


def seed_soft_iou_per_class(y, x, w):
  w = w[..., None]
  inter = np.sum(w * x * y, axis=(0, 1, 2))
  union = np.sum(w * (x + y - x * y), axis=(0, 1, 2))
  return 1.0 - np.mean(inter / union)


def seed_soft_iou_per_image(y, x, w):
  w = w[..., None]
  inter = np.sum(w * x * y, axis=(1, 2, 3))
  union = np.sum(w * (x + y - x * y), axis=(1, 2, 3))
  return 1.0 - np.mean(inter / union)


def test_soft_iou_is_the_seed_formula_to_1e_6_on_a_small_batch():
  """No smoothing term: on a 2x16x16x3 batch a +1 in I and U moved the value by 0.004."""
  y, x, w = _random_batch(9, shape=(2, 16, 16, 3))
  assert abs(float(losses.soft_iou_loss(y, x, w)) - seed_soft_iou(y, x, w)) < 1e-6


def test_per_image_form_leaves_out_an_all_ignore_image():
  y, x, w = _random_batch(10)
  w[1] = 0.0  # image 1 is all ignore: only image 0 counts
  np.testing.assert_allclose(
    losses.soft_iou_per_image_loss(y, x, w).numpy(), seed_soft_iou(y[:1], x[:1], w[:1]), rtol=1e-5
  )


@pytest.mark.parametrize(
  'loss_fn, reference',
  [
    (losses.soft_iou_loss, seed_soft_iou),
    (losses.soft_iou_per_class_loss, seed_soft_iou_per_class),
    (losses.soft_iou_per_image_loss, seed_soft_iou_per_image),
  ],
)
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
  np.testing.assert_allclose(
    losses.sigmoid_cross_entropy_loss(y, x, w).numpy(), expected, rtol=1e-5
  )


def test_get_loss_names_every_flag_value_and_rejects_others():
  y, x, w = _random_batch(6)
  combined = losses.get_loss('cross_entropy+soft_iou')(y, x, w)
  np.testing.assert_allclose(
    combined.numpy(),
    losses.sigmoid_cross_entropy_loss(y, x, w).numpy() + losses.soft_iou_loss(y, x, w).numpy(),
    rtol=1e-6,
  )
  step = tf.Variable(0, dtype=tf.int64)
  for name in losses.LOSS_NAMES:
    assert np.isfinite(float(losses.get_loss(name, step=step, switch_step=5)(y, x, w)))
  with pytest.raises(ValueError, match='unknown loss'):
    losses.get_loss('dice')
  with pytest.raises(ValueError, match='step to switch at'):
    losses.get_loss('cross_entropy>soft_iou')


def test_switched_loss_is_cross_entropy_before_the_switch_step_and_soft_iou_from_it():
  y, x, w = _random_batch(7)
  step = tf.Variable(0, dtype=tf.int64)
  loss = losses.get_loss('cross_entropy>soft_iou', step=step, switch_step=3)
  cross_entropy = losses.sigmoid_cross_entropy_loss(y, x, w).numpy()
  soft_iou = seed_soft_iou(y, x, w)
  assert abs(cross_entropy - soft_iou) > 0.05  # the two are told apart
  for value, expected in ((0, cross_entropy), (2, cross_entropy), (3, soft_iou), (10, soft_iou)):
    step.assign(value)
    np.testing.assert_allclose(loss(y, x, w).numpy(), expected, rtol=1e-5, err_msg=f'step {value}')


def numpy_lovasz_sigmoid(y, x, w):
  """Berman et al.'s reference algorithm (lovasz_losses.py: lovasz_softmax_flat with classes='present'
  on per-class probabilities), transcribed to numpy."""
  keep = w.reshape(-1) > 0
  labels, probs = y.reshape(-1, y.shape[-1])[keep], x.reshape(-1, x.shape[-1])[keep]
  losses_per_class = []
  for c in range(y.shape[-1]):
    fg = labels[:, c]
    if fg.sum() == 0:
      continue
    errors = np.abs(fg - probs[:, c])
    order = np.argsort(-errors, kind='stable')
    gt_sorted = fg[order]
    gts = gt_sorted.sum()
    jaccard = 1.0 - (gts - np.cumsum(gt_sorted)) / (gts + np.cumsum(1.0 - gt_sorted))
    grad = np.concatenate([jaccard[:1], np.diff(jaccard)])
    losses_per_class.append(np.dot(errors[order], grad))
  return np.mean(losses_per_class) if losses_per_class else 0.0


def test_lovasz_matches_reference_algorithm():
  for seed in range(5):
    y, x, w = _random_batch(seed)
    np.testing.assert_allclose(
      losses.lovasz_sigmoid_loss(y, x, w).numpy(), numpy_lovasz_sigmoid(y, x, w), rtol=1e-5
    )


def test_lovasz_hand_computed_binary_case():
  # Pixels: (label, probability) = (1, 0.8), (0, 0.3). Errors 0.2 and 0.3, sorted: 0.3 (label 0),
  # 0.2 (label 1). Jaccard loss of the prefixes: {px2} -> 1 - 1/2 = 0.5, {px2, px1} -> 1 - 0/2 = 1,
  # so the gradient is (0.5, 0.5) and the loss 0.3 * 0.5 + 0.2 * 0.5 = 0.25.
  y = np.array([[[[1.0], [0.0]]]], dtype=np.float32)
  x = np.array([[[[0.8], [0.3]]]], dtype=np.float32)
  assert float(losses.lovasz_sigmoid_loss(y, x)) == pytest.approx(0.25)


def test_lovasz_is_the_jaccard_loss_on_hard_predictions():
  # The Lovász extension is tight on the vertices: for 0/1 predictions it equals 1 - IoU per class.
  rng = np.random.default_rng(7)
  y = np.eye(2, dtype=np.float32)[rng.integers(0, 2, size=(1, 6, 6))]
  x = np.eye(2, dtype=np.float32)[rng.integers(0, 2, size=(1, 6, 6))]
  expected = np.mean(
    [1 - np.sum(x[..., c] * y[..., c]) / np.sum(np.maximum(x[..., c], y[..., c])) for c in range(2)]
  )
  assert float(losses.lovasz_sigmoid_loss(y, x)) == pytest.approx(expected, rel=1e-6)


def test_lovasz_ignores_zero_weight_pixels_and_empty_batches():
  y, x, w = _random_batch(8)
  garbage = np.where(w[..., None] > 0, x, 1.0 - x)
  np.testing.assert_allclose(
    losses.lovasz_sigmoid_loss(y, x, w).numpy(),
    losses.lovasz_sigmoid_loss(y, garbage, w).numpy(),
    rtol=1e-6,
  )
  assert float(losses.lovasz_sigmoid_loss(y, x, np.zeros_like(w))) == 0.0
  x_var = tf.Variable(x)
  with tf.GradientTape() as tape:
    value = losses.lovasz_sigmoid_loss(y, x_var, w)
  assert np.all(np.isfinite(tape.gradient(value, x_var).numpy()))


def test_cross_entropy_weight_scales_the_cross_entropy_term():
  y, x, w = _random_batch(9)
  expected = (
    0.25 * losses.sigmoid_cross_entropy_loss(y, x, w).numpy()
    + losses.soft_iou_loss(y, x, w).numpy()
  )
  np.testing.assert_allclose(
    losses.get_loss('cross_entropy+soft_iou', cross_entropy_weight=0.25)(y, x, w).numpy(),
    expected,
    rtol=1e-6,
  )


def test_cross_entropy_plus_per_class_soft_iou_is_the_sum_by_numpy():
  """nnU-Net's compound with the per-class soft IoU for Dice: weighted BCE + per-class 1 - I/U."""
  y, x, w = _random_batch(11)
  bce = -(y * np.log(x) + (1 - y) * np.log(1 - x))
  cross_entropy = np.sum(w[..., None] * bce) / (w.sum() * y.shape[-1])
  for weight in (1.0, 0.25):
    np.testing.assert_allclose(
      losses.get_loss('cross_entropy+soft_iou_per_class', cross_entropy_weight=weight)(
        y, x, w
      ).numpy(),
      weight * cross_entropy + seed_soft_iou_per_class(y, x, w),
      rtol=1e-5,
    )


def test_trainer_model_trains_on_cross_entropy_then_on_soft_iou_after_loss_switch():
  """`--loss cross_entropy>soft_iou --loss-switch 0.5` over 4 steps: the loss Keras minimises is
  cross-entropy at steps 1-2 and the soft IoU at steps 3-4 (a learning rate of 1e-12, the config
  refusing 0: the model stays put to far below the tolerance, so each step's loss can be recomputed
  from its outputs)."""
  import tf_keras

  from trainer import task
  from trainer.config import TrainerConfig

  y, _, w = _random_batch(8, shape=(4, 16, 16, 3))
  x = np.random.default_rng(8).normal(size=(4, 16, 16, 3)).astype(np.float32)
  config = TrainerConfig.from_flat(
    num_classes=3,
    image_size=16,
    base_filters=4,
    depth=1,
    batch_size=4,
    learning_rate=1e-12,
    loss='cross_entropy>soft_iou',
    loss_switch=0.5,
  )
  network = task.compiled_model(config, total_steps=4)
  step_losses = tf_keras.callbacks.History()
  network.fit(
    tf.data.Dataset.from_tensors((x, y, w)).repeat(),
    epochs=4,
    steps_per_epoch=1,
    callbacks=[step_losses],
    verbose=0,
  )
  outputs = network(x, training=True)
  cross_entropy = float(losses.sigmoid_cross_entropy_loss(y, outputs, w))
  soft_iou = float(losses.soft_iou_loss(y, outputs, w))
  np.testing.assert_allclose(
    step_losses.history['loss'], [cross_entropy, cross_entropy, soft_iou, soft_iou], rtol=1e-4
  )
