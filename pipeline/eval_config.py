"""The Evaluator's TFMA configuration: which metrics, on which signature, and the blessing rules."""
import json
from typing import List, Optional

import tensorflow_model_analysis as tfma

from components import iou_metric
from transform import features

# The change threshold: the candidate may not be below the baseline at all; the tiny negative
# tolerance lets a candidate identical to the baseline (a re-run) pass instead of failing on a tie.
_NOT_WORSE_TOLERANCE = -1e-10


def make_eval_config(num_classes: int, min_mean_iou: float,
                     class_names: Optional[List[str]] = None) -> tfma.EvalConfig:
  """Mean IoU on the eval split, computed on the `model_resolution` signature against the transformed
  one-hot labels; blessed when mean IoU >= `min_mean_iou` and (with a baseline) not lower than it."""
  metric_config = {'num_classes': num_classes}
  if class_names:
    metric_config['class_names'] = list(class_names)
  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(
          signature_name='model_resolution',
          preprocessing_function_names=['transform_features'],
          label_key=features.LABEL,
          prediction_key='probabilities')],
      slicing_specs=[tfma.SlicingSpec()],
      metrics_specs=[tfma.MetricsSpec(metrics=[
          tfma.MetricConfig(
              class_name=iou_metric.SegmentationIoU.__name__,
              module=iou_metric.__name__,
              config=json.dumps(metric_config),
              threshold=tfma.MetricThreshold(
                  value_threshold=tfma.GenericValueThreshold(lower_bound={'value': min_mean_iou}),
                  change_threshold=tfma.GenericChangeThreshold(
                      direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                      absolute={'value': _NOT_WORSE_TOLERANCE}))),
      ])])
