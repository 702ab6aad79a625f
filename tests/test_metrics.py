"""`trainer.metrics.ThresholdedMeanIoU` (best-epoch selection and the Tuner's objective) against a
numpy reference written out from its definition: a pixel-weighted confusion matrix of the
thresholded prediction, ignored pixels left out, mean IoU over the classes that occur."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from trainer import metrics

from iou_reference import predicted_ids

NUM_CLASSES = 4
# Class 3 is never a label and never reaches the threshold: absent from the mean.
ABSENT = 3


def _batch(seed, shape=(2, 8, 8)):
  """One-hot labels of classes 0-2 with ignored (all-zero) rows, sigmoid-like probabilities whose
  class 3 stays below the threshold, and pixel weights that are not all 0 or 1."""
  rng = np.random.default_rng(seed)
  labels = np.eye(NUM_CLASSES, dtype=np.float32)[rng.integers(0, ABSENT, size=shape)]
  labels[rng.uniform(size=shape) < 0.2] = 0.0
  probabilities = rng.uniform(size=shape + (NUM_CLASSES,)).astype(np.float32)
  probabilities[..., ABSENT] *= 0.4
  weights = rng.choice(np.array([0.0, 0.5, 1.0, 2.0], np.float32), size=shape)
  return labels, probabilities, weights


def reference_matrix(batches, decode=predicted_ids, weigh=True, drop_ignored=True):
  """The weighted confusion matrix (rows ground truth, columns prediction) of `batches`; the
  keywords switch off one part of the definition each, to build the wrong answers."""
  matrix = np.zeros((NUM_CLASSES, NUM_CLASSES))
  for labels, probabilities, weights in batches:
    weight = weights.astype(np.float64) if weigh else np.ones(weights.shape)
    if drop_ignored:
      weight = weight * (labels.sum(-1) > 0)
    np.add.at(matrix, (labels.argmax(-1), decode(probabilities)), weight)
  return matrix


def reference_mean_iou(matrix, skip_absent=True):
  """TP / (TP + FP + FN) averaged over the classes with a nonzero denominator (all classes when
  `skip_absent` is off); 0 when no class occurs."""
  tp = np.diag(matrix)
  denominator = matrix.sum(0) + matrix.sum(1) - tp
  occurs = denominator > 0 if skip_absent else np.ones(NUM_CLASSES, bool)
  if not occurs.any():
    return 0.0
  iou = np.divide(tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
  return float(iou[occurs].mean())


def _result(batches):
  metric = metrics.ThresholdedMeanIoU(NUM_CLASSES)
  for batch in batches:
    metric.update_state(*batch)
  return metric


def test_accumulated_batches_match_the_numpy_reference():
  batches = [_batch(0), _batch(1)]
  metric = _result(batches)
  matrix = reference_matrix(batches)
  assert matrix[ABSENT].sum() == 0 and matrix[:, ABSENT].sum() == 0
  np.testing.assert_allclose(metric.total_cm.numpy(), matrix, rtol=1e-6)
  assert float(metric.result()) == pytest.approx(reference_mean_iou(matrix), rel=1e-6)


def test_every_part_of_the_definition_moves_the_value():
  """Each deliberately wrong reading gives another value, so the comparison above can fail."""
  batches = [_batch(2), _batch(3)]
  value = float(_result(batches).result())

  def argmax(probabilities):
    return probabilities.argmax(-1)

  wrong = {
    'pixel weights ignored': reference_mean_iou(reference_matrix(batches, weigh=False)),
    'ignored rows scored as class 0': reference_mean_iou(
      reference_matrix(batches, drop_ignored=False)
    ),
    'argmax over every channel': reference_mean_iou(reference_matrix(batches, decode=argmax)),
    'absent class scored as 0': reference_mean_iou(reference_matrix(batches), skip_absent=False),
    'last batch only': reference_mean_iou(reference_matrix(batches[1:])),
  }
  assert value == pytest.approx(reference_mean_iou(reference_matrix(batches)), rel=1e-6)
  for reading, wrong_value in wrong.items():
    assert abs(value - wrong_value) > 1e-3, reading


def test_zero_weight_and_ignored_pixels_count_nowhere():
  labels, probabilities, weights = _batch(4)
  dropped = (weights == 0) | (labels.sum(-1) == 0)
  garbage = np.where(dropped[..., None], 1.0 - probabilities, probabilities)
  cleaned = _result([(labels, probabilities, weights)]).total_cm.numpy()
  np.testing.assert_array_equal(_result([(labels, garbage, weights)]).total_cm.numpy(), cleaned)
  assert cleaned.sum() == pytest.approx(float(weights[~dropped].sum()))


def test_reset_state_starts_from_an_empty_matrix():
  first, second = _batch(5), _batch(6)
  metric = _result([first])
  metric.reset_state()
  assert not metric.total_cm.numpy().any()
  assert float(metric.result()) == 0.0  # no class occurs yet
  metric.update_state(*second)
  assert float(metric.result()) == pytest.approx(
    reference_mean_iou(reference_matrix([second])), rel=1e-6
  )


def test_threshold_rule_decides_each_pixel():
  """The best foreground class at probability >= 0.5, else background: the background channel
  never competes, however high."""
  probabilities = np.array(
    [
      [
        [
          [0.9, 0.5, 0.3, 0.0],  # exactly at the threshold: class 1
          [0.1, 0.49, 0.45, 0.0],  # below it: background, though class 1 is the largest channel
          [0.99, 0.2, 0.7, 0.6],  # background's 0.99 does not compete: class 2, the best foreground
          [0.0, 0.0, 0.0, 0.0],  # nothing: background
        ]
      ]
    ],
    np.float32,
  )
  labels = np.eye(NUM_CLASSES, dtype=np.float32)[[[[1, 1, 2, 3]]]]
  metric = metrics.ThresholdedMeanIoU(NUM_CLASSES)
  metric.update_state(labels, probabilities, np.ones((1, 1, 4), np.float32))
  expected = np.zeros((NUM_CLASSES, NUM_CLASSES))
  for truth, prediction in ((1, 1), (1, 0), (2, 2), (3, 0)):
    expected[truth, prediction] += 1
  np.testing.assert_array_equal(metric.total_cm.numpy(), expected)
  # Class 0: IoU 0 (two false negatives land there), 1: 1/2, 2: 1, 3: 0 (its label missed).
  assert float(metric.result()) == pytest.approx((0.0 + 0.5 + 1.0 + 0.0) / 4)


def test_keras_passes_pixel_weights_only_to_weighted_metrics():
  """Compiled as a weighted metric, `evaluate` over several batches gives the reference with the
  dataset's pixel weights; as a plain metric Keras never hands it the weights."""
  batches = [_batch(7), _batch(8)]
  labels, probabilities, weights = (np.concatenate(parts) for parts in zip(*batches))
  inputs = tf_keras.Input((8, 8, NUM_CLASSES))
  network = tf_keras.Model(inputs, tf_keras.layers.Activation('linear')(inputs))
  network.compile(
    loss='mse',
    metrics=[metrics.ThresholdedMeanIoU(NUM_CLASSES, name='plain')],
    weighted_metrics=[metrics.ThresholdedMeanIoU(NUM_CLASSES)],
  )
  dataset = tf.data.Dataset.from_tensor_slices((probabilities, labels, weights)).batch(2)
  results = network.evaluate(dataset, verbose=0, return_dict=True)
  assert results['mean_iou'] == pytest.approx(
    reference_mean_iou(reference_matrix(batches)), rel=1e-6
  )
  assert results['plain'] == pytest.approx(
    reference_mean_iou(reference_matrix(batches, weigh=False)), rel=1e-6
  )


def test_config_round_trip():
  metric = metrics.ThresholdedMeanIoU(NUM_CLASSES, name='val_iou')
  config = metric.get_config()
  restored = metrics.ThresholdedMeanIoU.from_config(config)
  assert (restored.num_classes, restored.name) == (NUM_CLASSES, 'val_iou')
  assert config == restored.get_config()
