"""TFMA metrics of the sigmoid segmentation model over the eval split, from sums a Beam combiner adds.

The Evaluator runs the exported model's `evaluation_sums` signature (`trainer.export`), which turns
each raw eval record into a few counts and sums and nothing per pixel: its confusion matrix at the
image's own resolution (the prediction `serving_default` returns, decoded with the project's
foreground rule `trainer.decode`, against the record's mask at its own size), its confusion matrix at
the model's resolution (the model-size prediction against the transformed label) and the soft IoU
loss's intersection and union (model resolution). Ignored pixels are in none of them. One combiner
adds these up per slice. Sums merge exactly, so every number is the same however Beam splits the
data, on any runner and any number of workers, and what TFMA holds per example is 2 C x C counts.

Two metrics read those sums; TFMA runs the combiner they share once (it de-duplicates computations
by combiner class and keys):
- `SegmentationIoU`, named `mean_iou` (the blessing's mean-IoU rules apply to that key: the image's
  own resolution, as PASCAL VOC and Cityscapes score), also emits `frequency_weighted_iou`,
  `pixel_accuracy` and `confusion_matrix` (int64 [C, C], rows ground truth, columns prediction), at
  the image's own resolution too, and, at the model's resolution, `mean_iou_model_resolution` and
  `soft_iou_loss` (the training loss over the split: a diagnostic of training);
- `ClassIoU` emits `iou/<class>` (own resolution) for one class: one MetricConfig per class, so that
  each class can carry thresholds of its own (class floors, the per-class regression limit).
A class absent from both the labels and the predictions of a slice has IoU NaN: like
`tf_keras.metrics.MeanIoU`, the mean leaves it out, and reports show it as absent, never as 0.
"""

import dataclasses
from collections.abc import Iterable, Mapping

import apache_beam as beam
import numpy as np
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import metric_types, metric_util
from tensorflow_model_analysis.utils import util

from trainer import export, iou

MEAN_IOU = 'mean_iou'
MEAN_IOU_MODEL_RESOLUTION = 'mean_iou_model_resolution'
FREQUENCY_WEIGHTED_IOU = 'frequency_weighted_iou'
PIXEL_ACCURACY = 'pixel_accuracy'
SOFT_IOU_LOSS = 'soft_iou_loss'
CONFUSION_MATRIX = 'confusion_matrix'
CLASS_IOU_PREFIX = 'iou/'


def class_iou_name(class_name: str) -> str:
  return CLASS_IOU_PREFIX + class_name


@dataclasses.dataclass
class SegmentationSums:
  """What the metrics are computed from; adding two gives the sums of the union of their pixels."""

  matrix: np.ndarray  # int64 [C, C] at each image's own resolution, rows ground truth, valid pixels
  model_resolution_matrix: np.ndarray  # int64 [C, C] at the model's resolution
  intersection: float = 0.0  # soft IoU loss's I = sum(X * Y) over valid pixels and classes
  union: float = 0.0  # soft IoU loss's U = sum(X + Y - X * Y)

  @classmethod
  def zeros(cls, num_classes: int) -> 'SegmentationSums':
    return cls(
      np.zeros((num_classes, num_classes), dtype=np.int64),
      np.zeros((num_classes, num_classes), dtype=np.int64),
    )

  @classmethod
  def of_example(cls, outputs: Mapping[str, np.ndarray], num_classes: int) -> 'SegmentationSums':
    """One example's sums from the outputs of the `evaluation_sums` signature."""
    matrices = [
      np.asarray(outputs[key], dtype=np.int64)
      for key in (export.CONFUSION_MATRIX, export.CONFUSION_MATRIX_MODEL_RESOLUTION)
    ]
    if any(matrix.size != num_classes**2 for matrix in matrices):
      raise ValueError(
        f'the model counts {matrices[0].shape} confusion matrices, the metric is '
        f'configured for {num_classes} classes'
      )
    return cls(
      *(matrix.reshape(num_classes, num_classes) for matrix in matrices),
      float(np.sum(outputs[export.SOFT_IOU_INTERSECTION])),
      float(np.sum(outputs[export.SOFT_IOU_UNION])),
    )

  def __iadd__(self, other: 'SegmentationSums') -> 'SegmentationSums':
    self.matrix += other.matrix
    self.model_resolution_matrix += other.model_resolution_matrix
    self.intersection += other.intersection
    self.union += other.union
    return self

  def metrics(self) -> dict[str, object]:
    """The dataset-level values, by metric name (per-class IoU: `iou.per_class_iou(self.matrix)`)."""
    total = self.matrix.sum()
    return {
      MEAN_IOU: iou.mean_iou(self.matrix),
      FREQUENCY_WEIGHTED_IOU: frequency_weighted_iou(self.matrix),
      PIXEL_ACCURACY: float(np.trace(self.matrix) / total) if total else float('nan'),
      MEAN_IOU_MODEL_RESOLUTION: iou.mean_iou(self.model_resolution_matrix),
      # trainer.losses.soft_iou_loss over the whole split, in float64: 1 - I/U, 0 without a union.
      SOFT_IOU_LOSS: 1.0 - self.intersection / self.union if self.union > 0 else 0.0,
      CONFUSION_MATRIX: self.matrix.copy(),
    }


def frequency_weighted_iou(matrix: np.ndarray) -> float:
  """Each class's IoU weighted by its share of the ground-truth pixels (Long et al., FCN, 2015).
  A class absent from the ground truth has weight 0, so its IoU (0 or NaN) does not count."""
  truth = matrix.sum(axis=1)
  if not truth.sum():
    return float('nan')
  per_class = np.nan_to_num(iou.per_class_iou(matrix))
  return float((truth * per_class).sum() / truth.sum())


class _SumsCombiner(beam.CombineFn):
  """Adds up the `SegmentationSums` of every example of a slice."""

  def __init__(self, key: metric_types.MetricKey, num_classes: int, model_name: str):
    self._key = key
    self._num_classes = num_classes
    self._model_name = model_name

  def create_accumulator(self) -> SegmentationSums:
    return SegmentationSums.zeros(self._num_classes)

  def add_input(
    self, accumulator: SegmentationSums, element: metric_types.StandardMetricInputs
  ) -> SegmentationSums:
    outputs = (
      element.predictions
    )  # the signature's outputs, by name (by model name first if several)
    if self._model_name:
      outputs = util.get_by_keys(outputs, [self._model_name])
    accumulator += SegmentationSums.of_example(outputs, self._num_classes)
    return accumulator

  def merge_accumulators(self, accumulators: Iterable[SegmentationSums]) -> SegmentationSums:
    result = self.create_accumulator()
    for accumulator in accumulators:
      result += accumulator
    return result

  def extract_output(self, accumulator: SegmentationSums) -> dict[metric_types.MetricKey, object]:
    return {self._key: accumulator}


def _sums_computation(
  num_classes: int, model_name: str, output_name: str, example_weighted: bool
) -> metric_types.MetricComputation:
  # The settings are part of the (private: TFMA does not write it out) key, so two metrics share the
  # combiner only when they would compute the same sums.
  key = metric_types.MetricKey(
    name=f'_segmentation_sums(num_classes={num_classes})',
    model_name=model_name,
    output_name=output_name,
    example_weighted=example_weighted,
  )
  return metric_types.MetricComputation(
    keys=[key], preprocessors=None, combiner=_SumsCombiner(key, num_classes, model_name)
  )


class _SplitMetrics:
  """Derives `SegmentationIoU`'s values from the sums (a class, so Beam can pickle it)."""

  def __init__(self, sums_key: metric_types.MetricKey, keys: dict[str, metric_types.MetricKey]):
    self._sums_key = sums_key
    self._keys = keys

  def __call__(self, metrics: dict[metric_types.MetricKey, object]):
    values = metrics[self._sums_key].metrics()
    return {key: values[name] for name, key in self._keys.items()}


class _ClassIoUValue:
  """Derives one class's IoU from the sums."""

  def __init__(self, sums_key: metric_types.MetricKey, key: metric_types.MetricKey, class_id: int):
    self._sums_key = sums_key
    self._key = key
    self._class_id = class_id

  def __call__(self, metrics: dict[metric_types.MetricKey, object]):
    return {self._key: float(iou.per_class_iou(metrics[self._sums_key].matrix)[self._class_id])}


class SegmentationIoU(tfma.metrics.Metric):
  """Mean IoU (own resolution and model resolution), frequency-weighted IoU, pixel accuracy, soft
  IoU loss and confusion matrix of a split. The model decodes (`trainer.decode`) before it counts."""

  def __init__(self, num_classes: int, name: str = MEAN_IOU):
    super().__init__(
      metric_util.merge_per_key_computations(_split_computations),
      name=name,
      num_classes=num_classes,
    )


def _split_computations(
  num_classes: int,
  name: str,
  eval_config=None,
  model_name: str = '',
  output_name: str = '',
  example_weighted: bool = False,
) -> metric_types.MetricComputations:
  del eval_config  # The signature's outputs are read by their names.
  sums = _sums_computation(num_classes, model_name, output_name, example_weighted)
  keys = {
    metric_name: metric_types.MetricKey(
      name=name if metric_name == MEAN_IOU else metric_name,
      model_name=model_name,
      output_name=output_name,
      example_weighted=example_weighted,
    )
    for metric_name in (
      MEAN_IOU,
      FREQUENCY_WEIGHTED_IOU,
      PIXEL_ACCURACY,
      MEAN_IOU_MODEL_RESOLUTION,
      SOFT_IOU_LOSS,
      CONFUSION_MATRIX,
    )
  }
  return [
    sums,
    metric_types.DerivedMetricComputation(
      keys=list(keys.values()), result=_SplitMetrics(sums.keys[0], keys)
    ),
  ]


class ClassIoU(tfma.metrics.Metric):
  """The IoU of class `class_id`, named `iou/<class_name>`; NaN when the class is absent."""

  def __init__(self, num_classes: int, class_id: int, class_name: str, name: str | None = None):
    if not 0 <= class_id < num_classes:
      raise ValueError(f'class_id {class_id} outside [0, {num_classes})')
    super().__init__(
      metric_util.merge_per_key_computations(_class_computations),
      name=name or class_iou_name(class_name),
      num_classes=num_classes,
      class_id=class_id,
      class_name=class_name,
    )


def _class_computations(
  num_classes: int,
  class_id: int,
  name: str,
  eval_config=None,
  model_name: str = '',
  output_name: str = '',
  example_weighted: bool = False,
  **_,
) -> metric_types.MetricComputations:  # `class_name` is in `name` already
  del eval_config
  sums = _sums_computation(num_classes, model_name, output_name, example_weighted)
  key = metric_types.MetricKey(
    name=name, model_name=model_name, output_name=output_name, example_weighted=example_weighted
  )
  return [
    sums,
    metric_types.DerivedMetricComputation(
      keys=[key], result=_ClassIoUValue(sums.keys[0], key, class_id)
    ),
  ]


metric_types.register_metric(SegmentationIoU)
metric_types.register_metric(ClassIoU)
