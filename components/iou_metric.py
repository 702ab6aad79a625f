"""TFMA metric: dataset-level IoU from a confusion matrix accumulated in a Beam `CombineFn`.

Keras' IoU metrics cannot run inside TFMA on [H, W, C] outputs (TFMA hands one weight per example),
and TFMA's own segmentation metrics have no IoU. A confusion matrix is a sum, so a combiner that adds
matrices gives the same numbers however Beam splits the data, on any runner.

Labels are the transformed one-hot masks (all-zero rows are ignored pixels); predictions are the
sigmoid probabilities, decoded with the project's foreground rule (`trainer.decode`).
Emitted keys: `mean_iou` (the metric's name; blessing thresholds apply to it), `iou/<class>` per
class and `pixel_accuracy`.
"""
from typing import Dict, Iterable, List, Optional

import apache_beam as beam
import numpy as np
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import metric_types, metric_util

from trainer import decode, iou

MEAN_IOU = 'mean_iou'


def class_iou_name(class_name: str) -> str:
  return f'iou/{class_name}'


class SegmentationIoU(tfma.metrics.Metric):
  """Mean IoU, per-class IoU and pixel accuracy of a sigmoid segmentation model."""

  def __init__(self, num_classes: int, class_names: Optional[List[str]] = None,
               foreground_threshold: float = decode.FOREGROUND_THRESHOLD, name: str = MEAN_IOU):
    super().__init__(metric_util.merge_per_key_computations(_computations), name=name,
                     num_classes=num_classes, class_names=class_names,
                     foreground_threshold=foreground_threshold)


def _computations(num_classes: int, class_names: Optional[List[str]], foreground_threshold: float,
                  name: str, eval_config=None, model_name: str = '', output_name: str = '',
                  **_) -> metric_types.MetricComputations:
  class_names = class_names or [f'class_{k}' for k in range(num_classes)]
  if len(class_names) != num_classes:
    raise ValueError(f'{len(class_names)} class names for {num_classes} classes')

  def key(metric_name):
    return metric_types.MetricKey(name=metric_name, model_name=model_name, output_name=output_name)

  keys = {MEAN_IOU: key(name), 'pixel_accuracy': key('pixel_accuracy')}
  keys.update({class_iou_name(c): key(class_iou_name(c)) for c in class_names})
  return [metric_types.MetricComputation(
      keys=list(keys.values()), preprocessors=None,
      combiner=_ConfusionMatrixCombiner(keys, class_names, foreground_threshold, eval_config,
                                        model_name, output_name))]


class _ConfusionMatrixCombiner(beam.CombineFn):
  """Accumulates one [C, C] int64 confusion matrix (rows: truth, columns: prediction)."""

  def __init__(self, keys: Dict[str, metric_types.MetricKey], class_names: List[str],
               foreground_threshold: float, eval_config, model_name: str, output_name: str):
    self._keys = keys
    self._class_names = class_names
    self._threshold = foreground_threshold
    self._eval_config = eval_config
    self._model_name = model_name
    self._output_name = output_name

  def create_accumulator(self) -> np.ndarray:
    return np.zeros((len(self._class_names),) * 2, dtype=np.int64)

  def add_input(self, accumulator: np.ndarray,
                element: metric_types.StandardMetricInputs) -> np.ndarray:
    for labels, probabilities, _ in metric_util.to_label_prediction_example_weight(
        element, eval_config=self._eval_config, model_name=self._model_name,
        output_name=self._output_name, flatten=False, squeeze=False):
      labels = np.asarray(labels)
      probabilities = np.asarray(probabilities)
      if labels.shape != probabilities.shape:
        raise ValueError(f'label shape {labels.shape} differs from prediction shape '
                         f'{probabilities.shape}: labels must be the transformed one-hot masks')
      true_ids, valid = decode.labels_to_class_ids_np(labels)
      pred_ids = decode.class_ids_np(probabilities, self._threshold)
      accumulator += iou.confusion_matrix(true_ids, pred_ids, valid, len(self._class_names))
    return accumulator

  def merge_accumulators(self, accumulators: Iterable[np.ndarray]) -> np.ndarray:
    return sum(accumulators, self.create_accumulator())

  def extract_output(self, accumulator: np.ndarray) -> Dict[metric_types.MetricKey, float]:
    per_class = iou.per_class_iou(accumulator)
    total = accumulator.sum()
    output = {self._keys[MEAN_IOU]: iou.mean_iou(accumulator),
              self._keys['pixel_accuracy']: float(np.trace(accumulator) / total) if total else float('nan')}
    for class_name, value in zip(self._class_names, per_class):
      output[self._keys[class_iou_name(class_name)]] = float(value)
    return output


metric_types.register_metric(SegmentationIoU)
