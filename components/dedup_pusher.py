"""A Pusher (component and executor) that never publishes the same model twice.

TFX's Pusher copies every blessed model to a new timestamped version. A re-run with nothing new
re-evaluates the same model against itself as baseline (the Resolver's answer changed), blesses it
again and would publish a duplicate version that TF Serving then reloads for nothing. This executor
compares SavedModel fingerprints (TF's own checksum of the graph and of the checkpoint) with the
versions already in the destination and, on a match, records the existing version as the push.

`DedupPusher` is TFX's Pusher component with this executor; the pipeline gives it the node id
`Pusher`, which the run summary, the Kubeflow compile and the tests look up.
"""
import os

import tensorflow as tf
from tfx.components.pusher import component as pusher_component
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

# Custom property on the PushedModel artifact: 1 when the push reused an existing version.
ALREADY_SERVING_KEY = 'already_serving'


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

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    if self.CheckBlessing(input_dict):
      destination = pusher_pb2.PushDestination()
      proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY],
                                destination)
      base_directory = destination.filesystem.base_directory
      version = find_existing_version(self.GetModelPath(input_dict), base_directory)
      if version is not None:
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        self._MarkPushed(model_push, pushed_destination=os.path.join(base_directory, version),
                         pushed_version=version)
        model_push.set_int_custom_property(ALREADY_SERVING_KEY, 1)
        return
    super().Do(input_dict, output_dict, exec_properties)


class DedupPusher(pusher_component.Pusher):
  """TFX's Pusher (same spec, inputs and outputs) running `Executor`: a model already serving in
  the destination is recorded as pushed there instead of being copied to a new version."""

  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
