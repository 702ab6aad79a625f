"""Numpy references the evaluation tests compare TFMA with: the model's decoding rule, confusion
matrices, the soft IoU sums and every metric by its definition, written out independently of the
project's own code."""

import math

import numpy as np
import pytest

from trainer import export

# The `evaluation_sums` signature's outputs, per example.
SUM_OUTPUTS = (
  export.CONFUSION_MATRIX,
  export.CONFUSION_MATRIX_MODEL_RESOLUTION,
  export.SOFT_IOU_INTERSECTION,
  export.SOFT_IOU_UNION,
)


def predicted_ids(probabilities):
  """The decoding rule, written out again: best foreground class if >= 0.5, else background."""
  best = probabilities[..., 1:].argmax(-1) + 1
  return np.where(probabilities[..., 1:].max(-1) >= 0.5, best, 0)


def numpy_confusion(ids, predictions, valid, num_classes):
  matrix = np.zeros((num_classes,) * 2, dtype=np.int64)
  np.add.at(matrix, (ids[valid], predictions[valid]), 1)
  return matrix


def soft_sums(labels, probabilities, valid):
  w = valid[..., None]
  return (
    (w * probabilities * labels).sum(),
    (w * (probabilities + labels - probabilities * labels)).sum(),
  )


def per_class_and_mean(m):
  """Each class's IoU (NaN for a class in neither truth nor prediction) and their mean over the
  classes that have one."""
  tp = np.diag(m).astype(float)
  union_k = m.sum(0) + m.sum(1) - tp
  per_class = [tp[k] / union_k[k] if union_k[k] else math.nan for k in range(len(m))]
  present = [v for v in per_class if not math.isnan(v)]
  return per_class, (np.mean(present) if present else math.nan)


def metrics_of(matrix, model_matrix, intersection, union, class_names):
  """Every metric by its definition, from a split's confusion matrices (own resolution, model
  resolution) and soft IoU sums."""
  per_class, mean = per_class_and_mean(matrix)
  truth = matrix.sum(1)
  expected = {
    'mean_iou': mean,
    'mean_iou_model_resolution': per_class_and_mean(model_matrix)[1],
    'pixel_accuracy': np.trace(matrix) / matrix.sum() if matrix.sum() else math.nan,
    'frequency_weighted_iou': (
      sum(truth[k] * per_class[k] for k in range(len(matrix)) if truth[k]) / truth.sum()
    )
    if truth.sum()
    else math.nan,
    'soft_iou_loss': 1 - intersection / union if union > 0 else 0.0,  # the paper's 1 - I/U
    'confusion_matrix': matrix,
  }
  expected.update({f'iou/{name}': per_class[k] for k, name in enumerate(class_names)})
  return expected


def split_metrics(examples, class_names):
  """`metrics_of` a split from its examples' pixels, each example a pair: (label ids, predicted
  ids, valid) at its own size and (label ids, one-hot labels, probabilities, valid) at the model's
  resolution. The confusion matrices and soft IoU sums add up over the examples."""
  num_classes = len(class_names)
  matrix = sum(numpy_confusion(*native, num_classes) for native, _ in examples)
  model_matrix = sum(
    numpy_confusion(ids, predicted_ids(probabilities), valid, num_classes)
    for _, (ids, _, probabilities, valid) in examples
  )
  sums = [
    soft_sums(labels, probabilities, valid) for _, (_, labels, probabilities, valid) in examples
  ]
  intersection, union = sum(s[0] for s in sums), sum(s[1] for s in sums)
  return metrics_of(matrix, model_matrix, intersection, union, class_names)


def assert_metrics_equal(actual: dict, expected: dict, rel=1e-9, abs_=1e-12):
  assert set(actual) == set(expected)
  for name, value in expected.items():
    if name == 'confusion_matrix':
      np.testing.assert_array_equal(actual[name], value)
    elif math.isnan(value):
      assert math.isnan(actual[name]), (name, actual[name])
    else:
      assert actual[name] == pytest.approx(value, rel=rel, abs=abs_), name
