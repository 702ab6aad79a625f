"""A Pusher (component and executor) that never publishes the same model twice.

TFX's Pusher copies every blessed model to a new timestamped version. A re-run with nothing new
re-evaluates the same model against itself as baseline (the Resolver's answer changed), blesses it
again and would publish a duplicate version that TF Serving then reloads for nothing. This executor
compares SavedModel fingerprints (TF's own checksum of the graph and of the checkpoint) with the
versions already in the destination and, on a match, records the existing version as the push.

`DedupPusher` is TFX's Pusher component with this executor; the pipeline gives it the node id
`Pusher`, which the run summary, the Kubeflow compile and the tests look up.

TF Serving warm-up: given the optional `examples` input (the pipeline passes the RecordValidator's
valid examples), a new version carries `assets.extra/tf_serving_warmup_requests`, built from a few
eval records as a client sends them (`components.serving_warmup`). The executor stages the SavedModel
with that file in its temp dir and hands the staged copy to TFX's own push, which copies
`saved_model.pb` last (the file TF Serving's loader looks for), so the warm-up file is in place
before the version can load. Fingerprints cover the graph and the checkpoint, not assets.extra, so
the de-duplication finds a served version equal to the Trainer's model whether or not it carries
the warm-up file.
"""

import os

import tensorflow as tf
from tfx import types
from tfx.components.pusher import component as pusher_component
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter
from tfx.utils import json_utils, proto_utils

from components import serving_warmup

# Custom property on the PushedModel artifact: 1 when the push reused an existing version.
ALREADY_SERVING_KEY = 'already_serving'
# The optional input the warm-up requests are built from.
EXAMPLES_KEY = standard_component_specs.EXAMPLES_KEY


def _fingerprint(saved_model_dir: str):
  try:
    fingerprint = tf.saved_model.experimental.read_fingerprint(saved_model_dir)
  except (FileNotFoundError, ValueError, tf.errors.NotFoundError):
    return None  # A SavedModel written before fingerprints existed: never treated as a duplicate.
  return (fingerprint.saved_model_checksum, fingerprint.checkpoint_hash)


def find_existing_version(model_path: str, base_directory: str):
  """The version directory name under `base_directory` that holds this very model, or None."""
  wanted = _fingerprint(model_path)
  if wanted is None or not fileio.isdir(base_directory):
    return None
  for version in sorted(fileio.listdir(base_directory)):
    version = version.rstrip('/')
    candidate = os.path.join(base_directory, version)
    if version.isdigit() and _fingerprint(candidate) == wanted:
      return version
  return None


class Executor(pusher_executor.Executor):
  _staged_model_path = None  # set by Do while a staged copy (with the warm-up file) is pushed

  def GetModelPath(self, input_dict) -> str:
    """What TFX's push copies: the staged copy with the warm-up file while there is one."""
    return self._staged_model_path or super().GetModelPath(input_dict)

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    if not self.CheckBlessing(input_dict):
      super().Do(input_dict, output_dict, exec_properties)  # records the model as not pushed
      return
    destination = pusher_pb2.PushDestination()
    proto_utils.json_to_proto(
      exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination
    )
    base_directory = destination.filesystem.base_directory
    model_path = self.GetModelPath(input_dict)
    version = find_existing_version(model_path, base_directory)
    if version is not None:
      model_push = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.PUSHED_MODEL_KEY]
      )
      self._MarkPushed(
        model_push, pushed_destination=os.path.join(base_directory, version), pushed_version=version
      )
      model_push.set_int_custom_property(ALREADY_SERVING_KEY, 1)
      return
    examples = input_dict.get(EXAMPLES_KEY)
    if not examples:
      super().Do(input_dict, output_dict, exec_properties)
      return
    staging_dir = os.path.join(self._get_tmp_dir(), 'model_with_warmup')
    # TF Serving's model name is, by convention, the base directory's name.
    self._staged_model_path = serving_warmup.stage_with_warmup(
      model_path,
      staging_dir,
      artifact_utils.get_single_instance(examples),
      model_name=os.path.basename(base_directory.rstrip('/')),
    )
    try:
      super().Do(input_dict, output_dict, exec_properties)
    finally:
      self._staged_model_path = None
      fileio.rmtree(staging_dir)


class DedupPusherSpec(standard_component_specs.PusherSpec):
  """TFX's PusherSpec plus an optional `examples` input: the records the warm-up requests are
  built from. A declared input, so the Pusher's lineage in ML Metadata names them, its cache key
  covers them, and every orchestrator (Kubeflow included) hands them to the executor."""

  INPUTS = {
    **standard_component_specs.PusherSpec.INPUTS,
    EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples, optional=True),
  }


class DedupPusher(pusher_component.Pusher):
  """TFX's Pusher (same parameters and outputs, plus the optional `examples` input) running
  `Executor`: a model already serving in the destination is recorded as pushed there instead of
  being copied to a new version; with `examples`, a new version carries TF Serving warm-up
  requests built from their eval split."""

  SPEC_CLASS = DedupPusherSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

  def __init__(
    self,
    model: types.BaseChannel,
    model_blessing: types.BaseChannel,
    push_destination,
    examples: types.BaseChannel = None,
    custom_config=None,
  ):
    """
    Args:
      model: the Trainer's model.
      model_blessing: the Evaluator's blessing; nothing is pushed without it.
      push_destination: a `PushDestination` with a filesystem base directory (or a
        RuntimeParameter holding one).
      examples: optional Examples whose eval split (else first split) the warm-up requests are
        built from; without it no warm-up file is written.
      custom_config: as TFX's Pusher's.
    """
    # TFX's Pusher.__init__ builds the stock PusherSpec, which has no `examples`: build this one
    # (the same arguments TFX's passes) and skip to the base component.
    base_component.BaseComponent.__init__(
      self,
      spec=DedupPusherSpec(
        model=model,
        model_blessing=model_blessing,
        examples=examples,
        push_destination=push_destination,
        custom_config=json_utils.dumps(custom_config),
        pushed_model=types.Channel(type=standard_artifacts.PushedModel),
      ),
    )
