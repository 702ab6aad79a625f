"""ModelCardGenerator: the TFX component after the Pusher that writes the pushed model's card.

A custom component with its own executor, as TFX builds one: its inputs are the artifacts the card
describes, so ML Metadata records the card's lineage and every orchestrator (Kubeflow included)
hands the executor the same artifacts with their ids and properties. An executor gets no ML Metadata
handle, so nothing here queries it: what the card says comes from these inputs and their files.

Inputs:
  model            the Trainer's model (the candidate the Evaluator judged)
  model_blessing   the Evaluator's blessing: its `baseline_model_id` / `baseline_model_uri`
  evaluation       the Evaluator's TFMA output: metrics per class and slice, the blessing rules
  pushed_model     the Pusher's output: nothing is written unless it says `pushed`
  examples         (optional) the valid examples the model was trained and evaluated on
  statistics       (optional) StatisticsGen's output: record counts per split
  quarantine       (optional) the RecordValidator's quarantine: bad records per split, first reasons
  transform_graph  (optional) Transform's graph
  base_model       (optional) the model the Trainer started from (its `base_model` input, with warm
                   starts); without it the card says 'cold start'
Parameters:
  trainer_config   (optional) the Trainer's `custom_config` (`TrainerConfig.to_dict()`, settings
                   by group) as JSON; the card lists them group by group
  train_args       (optional) the Trainer's TrainArgs (or the same runtime parameter)
Output:
  model_card       a `File` artifact (`ModelCard`, below) holding `model_card.md` and
                   `model_card.html`;
                   custom properties `written` (1 when the push was real and a card was made) and
                   `served_card` (where it was written beside the served model, '' if not there).

Where: `SERVING_DIR/<version>/assets.extra/model_card.{md,html}` (see docs/evaluation.md, "Model
card"). A push that found the model already serving leaves a card that is already there alone: that
card describes the push that published the version; this run's card is in the output artifact.
"""

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import trainer_pb2
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.types.experimental import simple_artifacts

from components.model_card import executor

# The card's artifact type: TFX's simple `File` type. A custom type would not do on Kubeflow: TFX's KFP
# entrypoint imports a custom type by its schema title, which must be a top-level `module.Class`
# (`kubeflow_v2_entrypoint_utils._retrieve_class_path`; the compiler allows one dot), and `File` is
# among the types it maps itself (`compiler_utils.TITLE_TO_CLASS_PATH`).
ModelCard = simple_artifacts.File


class ModelCardGeneratorSpec(types.ComponentSpec):
  PARAMETERS = {
    executor.TRAINER_CONFIG_KEY: ExecutionParameter(type=str, optional=True),
    executor.TRAIN_ARGS_KEY: ExecutionParameter(type=trainer_pb2.TrainArgs, optional=True),
  }
  INPUTS = {
    executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
    executor.BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
    executor.EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation),
    executor.PUSHED_MODEL_KEY: ChannelParameter(type=standard_artifacts.PushedModel),
    executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples, optional=True),
    executor.STATISTICS_KEY: ChannelParameter(
      type=standard_artifacts.ExampleStatistics, optional=True
    ),
    executor.QUARANTINE_KEY: ChannelParameter(type=standard_artifacts.Examples, optional=True),
    executor.TRANSFORM_GRAPH_KEY: ChannelParameter(
      type=standard_artifacts.TransformGraph, optional=True
    ),
    executor.BASE_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model, optional=True),
  }
  OUTPUTS = {executor.MODEL_CARD_KEY: ChannelParameter(type=ModelCard)}


class ModelCardGenerator(base_component.BaseComponent):
  """Writes the pushed model's card (module doc); writes nothing when nothing was pushed."""

  SPEC_CLASS = ModelCardGeneratorSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(
    self,
    model: types.BaseChannel,
    model_blessing: types.BaseChannel,
    evaluation: types.BaseChannel,
    pushed_model: types.BaseChannel,
    examples: types.BaseChannel = None,
    statistics: types.BaseChannel = None,
    quarantine: types.BaseChannel = None,
    transform_graph: types.BaseChannel = None,
    base_model: types.BaseChannel = None,
    trainer_config=None,
    train_args=None,
  ):
    super().__init__(
      spec=ModelCardGeneratorSpec(
        model=model,
        model_blessing=model_blessing,
        evaluation=evaluation,
        pushed_model=pushed_model,
        examples=examples,
        statistics=statistics,
        quarantine=quarantine,
        transform_graph=transform_graph,
        base_model=base_model,
        trainer_config=trainer_config,
        train_args=train_args,
        model_card=types.Channel(type=ModelCard),
      )
    )
