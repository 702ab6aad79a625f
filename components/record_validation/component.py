"""RecordValidator: the TFX component between ExampleGen and the components that read examples."""

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.orchestration import data_types
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.record_validation import executor
from transform import data_format


class RecordValidatorSpec(types.ComponentSpec):
  PARAMETERS = {
    executor.NUM_CLASSES_KEY: ExecutionParameter(type=int),
    executor.IGNORE_LABEL_KEY: ExecutionParameter(type=int),
    executor.MAX_BAD_FRACTION_KEY: ExecutionParameter(type=float),
  }
  INPUTS = {executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}
  OUTPUTS = {
    executor.VALID_EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
    executor.QUARANTINE_KEY: ChannelParameter(type=standard_artifacts.Examples),
  }


class RecordValidator(base_beam_component.BaseBeamComponent):
  """Checks every record the way `iouseg convert` checks its inputs; passes on the valid ones.

  Outputs:
    valid_examples: Examples with the input's splits, the valid records' bytes unchanged, GZIP
      TFRecords like ExampleGen's; what StatisticsGen, Transform and Evaluator should read.
    quarantine: Examples with the same splits holding each bad record unchanged and its reason
      (layout in `components.record_validation.quarantine`).
  The run fails when any split's fraction of bad records exceeds `max_bad_fraction`; the message
  names the counts, the first reasons and the quarantine's URI.
  """

  SPEC_CLASS = RecordValidatorSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

  def __init__(
    self,
    examples: types.BaseChannel,
    num_classes: int | data_types.RuntimeParameter,
    ignore_label: int | data_types.RuntimeParameter = data_format.DEFAULT_IGNORE_LABEL,
    max_bad_fraction: float | data_types.RuntimeParameter = 0.0,
  ):
    """
    Args:
      examples: ExampleGen's output: serialized tf.train.Example records in the project's format.
      num_classes: mask values 0..num_classes-1 are classes.
      ignore_label: the one other mask value allowed (pixels left out of loss and metrics).
      max_bad_fraction: largest fraction of any split's records that may be bad without failing.
    """
    if not any(
      isinstance(value, data_types.RuntimeParameter)
      for value in (num_classes, ignore_label, max_bad_fraction)
    ):
      executor.check_settings(num_classes, ignore_label, max_bad_fraction)
      max_bad_fraction = float(max_bad_fraction)
    spec = RecordValidatorSpec(
      examples=examples,
      num_classes=num_classes,
      ignore_label=ignore_label,
      max_bad_fraction=max_bad_fraction,
      valid_examples=types.Channel(type=standard_artifacts.Examples),
      quarantine=types.Channel(type=standard_artifacts.Examples),
    )
    super().__init__(spec=spec)
