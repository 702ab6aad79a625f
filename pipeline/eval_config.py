"""The Evaluator's TFMA configuration: which metrics, on which signature, which slices, and the
blessing rules.

Blessing rules, each a TFMA threshold, so the Evaluator's blessing enforces it and its validation
result names the metric, the slice and the value that failed:
- `mean_iou >= min_mean_iou` and, with a baseline, `mean_iou` not below the baseline's. These sit on
  the mean-IoU metric itself, which TFMA checks on every slice: with slices configured, every slice
  must pass them.
- optional per-class floors (`iou/<class> >= x`) and an optional per-class regression limit (no
  class loses more than y IoU against the baseline), on the overall eval split only: a class is
  absent by construction from some slices (`label_has_<class>=no`), where its IoU means nothing.
  A gated class absent from the whole split (IoU NaN) fails its gate: a rule that cannot be checked
  does not pass.

Slices, besides the whole split: any example features (crossed when listed together), and, per
foreground class, whether the class occurs in the image's ground truth. The latter is a TFMA SQL
slice (`slice_keys_sql`) over `class_presence`, the [C] output of the model's `class_presence`
signature (`trainer.export`), which runs as the ModelSpec's preprocessing function: TFMA 0.47 puts a
preprocessing function's outputs under `transformed_features` and adds them to the features its SQL
slices see. A real TFMA slice, so every metric and the mean-IoU rules apply to it.

What TFMA evaluates is the model's `evaluation_sums` signature on the Evaluator's examples (the
RecordValidator's valid raw records): per example a few counts and sums, no per-pixel tensor, so
TFMA's memory does not grow with image size or class count. TFMA 0.47's default extractors run a
signature on whatever batch Beam made of the input records (up to 1000) and ignore
`ModelSpec.inference_batch_size` (only `TfxBslPredictionsExtractor` reads it), so no setting here
bounds the model's batch; the signature walks its batch in chunks sized by bytes itself
(`trainer.export.evaluation_batch_size`).
"""

import dataclasses
import json
from collections.abc import Sequence

import tensorflow_model_analysis as tfma

from components import iou_metric
from trainer import export

# The change threshold: the candidate may not be below the baseline at all; the tiny negative
# tolerance lets a candidate identical to the baseline (a re-run) pass instead of failing on a tie.
_NOT_WORSE_TOLERANCE = -1e-10
PRESENCE_SLICE_PREFIX = 'label_has_'


@dataclasses.dataclass(frozen=True)
class EvalOptions:
  """Blessing rules and slices beyond the mean-IoU bound; all optional.

  Attributes:
    class_min_iou: class name -> the lowest IoU that class may have on the eval split.
    max_class_drop: the most IoU any class may lose against the baseline (latest blessed model).
    slice_features: feature slices; the features of one entry are crossed into one slice.
    class_presence_slices: slice by whether each foreground class occurs in the ground truth.
  """

  class_min_iou: dict[str, float] = dataclasses.field(default_factory=dict)
  max_class_drop: float | None = None
  slice_features: Sequence[Sequence[str]] = ()
  class_presence_slices: bool = False


def presence_slice_column(class_name: str) -> str:
  return PRESENCE_SLICE_PREFIX + class_name


def _presence_slice(class_id: int, column: str) -> tfma.SlicingSpec:
  """`column` = 'yes' for images whose ground truth holds class `class_id`, 'no' otherwise."""
  if '`' in column:
    raise ValueError(f'class names may not contain a backtick: {column!r}')
  # SQL sees the [C] presence vector as a list of C values: element i is class i (1 = present;
  # ignored pixels make no class present).
  return tfma.SlicingSpec(
    slice_keys_sql=(
      f'SELECT STRUCT(IF(EXISTS(SELECT 1 FROM example.{export.CLASS_PRESENCE} AS v WITH OFFSET i '
      f"WHERE i = {class_id} AND v > 0), 'yes', 'no') AS `{column}`)"
    )
  )


def slicing_specs(class_names: list[str], options: EvalOptions) -> list[tfma.SlicingSpec]:
  specs = [tfma.SlicingSpec()]
  specs += [tfma.SlicingSpec(feature_keys=list(keys)) for keys in options.slice_features]
  if options.class_presence_slices:
    specs += [
      _presence_slice(k, presence_slice_column(name)) for k, name in enumerate(class_names) if k > 0
    ]
  return specs


def _class_threshold(class_name: str, options: EvalOptions) -> tfma.MetricThreshold | None:
  floor = options.class_min_iou.get(class_name)
  threshold = tfma.MetricThreshold()
  if floor is not None:
    threshold.value_threshold.lower_bound.value = floor
  if options.max_class_drop is not None:
    threshold.change_threshold.direction = tfma.MetricDirection.HIGHER_IS_BETTER
    threshold.change_threshold.absolute.value = -options.max_class_drop
  return threshold if threshold.ByteSize() else None


def _class_metric(
  class_id: int, class_name: str, num_classes: int, options: EvalOptions
) -> tfma.MetricConfig:
  config = tfma.MetricConfig(
    class_name=iou_metric.ClassIoU.__name__,
    module=iou_metric.__name__,
    config=json.dumps({'num_classes': num_classes, 'class_id': class_id, 'class_name': class_name}),
  )
  threshold = _class_threshold(class_name, options)
  if threshold is not None:
    config.per_slice_thresholds.add(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)
  return config


def make_eval_config(
  num_classes: int,
  min_mean_iou: float,
  class_names: list[str] | None = None,
  options: EvalOptions | None = None,
) -> tfma.EvalConfig:
  """IoU metrics on the eval split, summed from the model's `evaluation_sums` signature (the
  blessing's `mean_iou` at each image's own resolution), with the blessing rules and slices
  described above.

  `metrics_specs[0]` holds the one metric with the mean-IoU rules (what `kubeflow.parameters` edits
  at submission); `metrics_specs[1]` holds one `iou/<class>` metric per class.
  """
  options = options or EvalOptions()
  class_names = list(class_names or [f'class_{k}' for k in range(num_classes)])
  if len(class_names) != num_classes:
    raise ValueError(f'{len(class_names)} class names for {num_classes} classes')
  unknown = sorted(set(options.class_min_iou) - set(class_names))
  if unknown:
    raise ValueError(f'class floors for unknown classes {unknown}; classes: {class_names}')
  return tfma.EvalConfig(
    # No label or prediction key: the metrics read the signature's outputs by name.
    model_specs=[
      tfma.ModelSpec(
        signature_name=export.EVALUATION_SIGNATURE,
        preprocessing_function_names=[export.PRESENCE_SIGNATURE],
        # What TFMA ends up with anyway: without a type it first loads the model as Keras, which
        # fails (an exception it swallows), a whole model load for nothing (0.5 s in a profile).
        model_type=tfma.TF_GENERIC,
      )
    ],
    slicing_specs=slicing_specs(class_names, options),
    metrics_specs=[
      tfma.MetricsSpec(
        metrics=[
          tfma.MetricConfig(
            class_name=iou_metric.SegmentationIoU.__name__,
            module=iou_metric.__name__,
            config=json.dumps({'num_classes': num_classes}),
            threshold=tfma.MetricThreshold(
              value_threshold=tfma.GenericValueThreshold(lower_bound={'value': min_mean_iou}),
              change_threshold=tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                absolute={'value': _NOT_WORSE_TOLERANCE},
              ),
            ),
          )
        ]
      ),
      tfma.MetricsSpec(
        metrics=[_class_metric(k, name, num_classes, options) for k, name in enumerate(class_names)]
      ),
    ],
  )
