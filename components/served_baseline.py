"""ServedModelBaseline: the model TF Serving serves, as the Evaluator's baseline, on any orchestrator.

The latest-blessed-model Resolver is an ML Metadata query that the open-source Kubeflow Pipelines
backend cannot run ("resolver executors not implemented"). This component needs no query: it reads
the serving directory itself and imports its newest numeric version, the one TF Serving's default
version policy serves (a push's staging dir and a numbered folder without `saved_model.pb` are
passed over, as TF Serving's loader passes them over: `components.serving_dir`), as a `Model`
artifact: a copy of the version under `<uri>/Format-Serving`, the layout TFX's Trainer writes, with
custom properties `served_version` and `served_path`. The Evaluator compares the candidate with it, so a candidate worse than the model
in production is refused on every runner, as with the Resolver.

Nothing served yet (the first run): the output is one Model artifact holding no SavedModel, with
`served_version` ''. An empty output list is not possible on Kubeflow: TFX's KFP entrypoint needs
exactly one artifact per output key (`kubeflow_v2_entrypoint_utils.translate_executor_output` calls
`get_single_instance`), and the open-source backend registers every declared output artifact
whatever the executor reports (`uploadOutputArtifacts` in kubeflow/pipelines'
`backend/src/v2/component/launcher_v2.go` merges a reported list only when it is non-empty). So every
runner gets the same empty artifact, and `ServedBaselineEvaluator`, TFX's Evaluator with an executor
that drops a baseline holding no SavedModel, runs without a baseline: TFX then leaves out the change
rules, as on a first run with the Resolver.

Caching. The component reads state outside the pipeline, so a cached answer would be stale. Its
driver (`ServedVersionDriver`, run by TFX's launcher before the cache lookup) puts the served
version and its SavedModel fingerprint into the exec property `served_version`: the cache key
changes exactly when the served model does. The KFP compile turns caching off for this task
(`kubeflow.compile`), since KFP's backend runs no TFX driver.
"""

import os

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.components.evaluator import component as evaluator_component
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.components.base import base_driver as dsl_base_driver
from tfx.dsl.io import fileio
from tfx.orchestration import data_types_utils
from tfx.orchestration.portable import base_driver
from tfx.proto.orchestration import driver_output_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import io_utils, path_utils

from components import serving_dir

MODEL_KEY = 'model'
SERVING_MODEL_DIR_KEY = 'serving_model_dir'
SERVED_VERSION_KEY = 'served_version'  # exec property (set by the driver) and artifact property
SERVED_PATH_KEY = 'served_path'  # artifact property: the version folder that was copied


def newest_served_version(serving_model_dir: str) -> str | None:
  """The name of the version TF Serving serves from `serving_model_dir` with its default policy
  (the largest number among the folders holding a `saved_model.pb`; a push's staging dir is no
  version: `serving_dir`), or None."""
  return serving_dir.newest_complete_version(serving_model_dir)


def served_state(serving_model_dir: str) -> str:
  """'<version>:<SavedModel checksum>' of the served version ('' when none): what the cache key
  must follow. The checksum catches a version folder replaced under the same number."""
  version = newest_served_version(serving_model_dir)
  if version is None:
    return ''
  try:
    fingerprint = tf.saved_model.experimental.read_fingerprint(
      os.path.join(serving_model_dir, version)
    )
    checksum = str(fingerprint.saved_model_checksum)
  except (FileNotFoundError, ValueError, tf.errors.NotFoundError):
    checksum = 'no-fingerprint'
  return f'{version}:{checksum}'


class ServedVersionDriver(dsl_base_driver.BaseDriver, base_driver.BaseDriver):
  """Sets the exec property `served_version` before TFX's launcher computes the cache key. (Both
  bases, as TFX's ExampleGen driver has: the component API checks for the first, the IR launcher
  runs the second's `run`.)"""

  def __init__(self, metadata_handle):
    dsl_base_driver.BaseDriver.__init__(self, metadata_handle)
    base_driver.BaseDriver.__init__(self, metadata_handle)

  def run(self, execution_info) -> driver_output_pb2.DriverOutput:
    result = driver_output_pb2.DriverOutput()
    for key, value in execution_info.exec_properties.items():
      if value is not None:
        data_types_utils.set_metadata_value(result.exec_properties[key], value)
    data_types_utils.set_metadata_value(
      result.exec_properties[SERVED_VERSION_KEY],
      served_state(execution_info.exec_properties[SERVING_MODEL_DIR_KEY]),
    )
    for key, artifacts in execution_info.output_dict.items():
      for artifact in artifacts:
        result.output_artifacts[key].artifacts.append(artifact.mlmd_artifact)
    return result


class Executor(base_executor.BaseExecutor):
  """Copies the served version into the output Model artifact; with nothing served, leaves it
  empty (`served_version` '')."""

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    serving_model_dir = exec_properties[SERVING_MODEL_DIR_KEY]
    version = newest_served_version(serving_model_dir)
    model = output_dict[MODEL_KEY][0]
    if version is None:
      logging.info('Nothing served in %s: no baseline model.', serving_model_dir)
      model.set_string_custom_property(SERVED_VERSION_KEY, '')
      model.set_string_custom_property(SERVED_PATH_KEY, '')
      return
    source = os.path.join(serving_model_dir, version)
    io_utils.copy_dir(source, path_utils.serving_model_dir(model.uri))
    model.set_string_custom_property(SERVED_VERSION_KEY, version)
    model.set_string_custom_property(SERVED_PATH_KEY, source)
    logging.info('Baseline: served version %s (%s).', version, source)


class ServedModelBaselineSpec(types.ComponentSpec):
  PARAMETERS = {
    SERVING_MODEL_DIR_KEY: ExecutionParameter(type=str),
    SERVED_VERSION_KEY: ExecutionParameter(type=str, optional=True),
  }
  INPUTS = {}
  OUTPUTS = {MODEL_KEY: ChannelParameter(type=standard_artifacts.Model)}


class ServedModelBaseline(base_component.BaseComponent):
  """The newest numeric version under `serving_model_dir` as a Model artifact (`outputs['model']`),
  empty when nothing is served; feed it to `ServedBaselineEvaluator(baseline_model=...)`."""

  SPEC_CLASS = ServedModelBaselineSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
  DRIVER_CLASS = ServedVersionDriver

  def __init__(self, serving_model_dir: str):
    super().__init__(
      spec=ServedModelBaselineSpec(
        serving_model_dir=serving_model_dir, model=types.Channel(type=standard_artifacts.Model)
      )
    )


def holds_saved_model(model: types.Artifact) -> bool:
  path = path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))
  return fileio.exists(os.path.join(path, 'saved_model.pb'))


class BaselineTolerantExecutor(evaluator_executor.Executor):
  """TFX's Evaluator executor, with a baseline that holds no SavedModel (nothing was served; see the
  module doc) treated as no baseline: TFX then drops the change thresholds, as on a first run."""

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    key = standard_component_specs.BASELINE_MODEL_KEY
    baselines = input_dict.get(key) or []
    kept = [model for model in baselines if holds_saved_model(model)]
    if len(kept) != len(baselines):
      logging.info(
        'Baseline %s holds no SavedModel (nothing was served): evaluating without one.',
        [model.uri for model in baselines],
      )
      input_dict = {**input_dict, key: kept}
    super().Do(input_dict, output_dict, exec_properties)


class ServedBaselineEvaluator(evaluator_component.Evaluator):
  """TFX's Evaluator (same spec, inputs and outputs) running `BaselineTolerantExecutor`."""

  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(BaselineTolerantExecutor)
