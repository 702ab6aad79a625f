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
eval records as a client sends them (`components.serving_warmup`). Fingerprints cover the graph and
the checkpoint, not assets.extra, so the de-duplication finds a served version equal to the
Trainer's model whether or not it carries the warm-up file.

Publishing is atomic (`components.serving_dir`): the SavedModel and its warm-up file are copied to a
staging dir inside the destination whose name is not a number (so TF Serving never loads it), then
renamed to the new version's number in one step. A push killed while copying leaves only a staging
dir, which the next push removes; a killed push never leaves a numbered directory without
`saved_model.pb`. The new version's number is the Unix time, or one more than the largest number
already there, so it is always the one TF Serving's latest-version policy serves.
"""

import os

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.components.pusher import component as pusher_component
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter
from tfx.utils import io_utils, json_utils, proto_utils

from components import serving_dir, serving_warmup

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
  """The complete version under `base_directory` (`serving_dir.complete_versions`: a staging dir or
  a numbered one without `saved_model.pb` is no version) that holds this very model, or None."""
  wanted = _fingerprint(model_path)
  if wanted is None:
    return None
  for version in serving_dir.complete_versions(base_directory):
    if _fingerprint(os.path.join(base_directory, version)) == wanted:
      return version
  return None


def publish(model_path: str, base_directory: str, examples=None) -> str:
  """Copies the SavedModel at `model_path` (with warm-up requests built from `examples`, if given)
  to a new version under `base_directory` through a staging dir and one rename; returns the
  version. Staging dirs left by killed pushes are removed first."""
  fileio.makedirs(base_directory)
  for name in serving_dir.clean_staging(base_directory):
    logging.info('Removed %s, left by a push that did not finish.', name)
  version = serving_dir.next_version(base_directory)
  staging = serving_dir.staging_path(base_directory, version)
  try:
    if examples is not None:
      # TF Serving's model name is, by convention, the base directory's name.
      serving_warmup.stage_with_warmup(
        model_path, staging, examples, model_name=os.path.basename(base_directory.rstrip('/'))
      )
    else:
      io_utils.copy_dir(model_path, staging)
    if not fileio.exists(os.path.join(staging, serving_dir.SAVED_MODEL_FILE)):
      # TFX's copy_dir copies a missing or partial source without complaint.
      raise FileNotFoundError(
        f'no {serving_dir.SAVED_MODEL_FILE} in {model_path}: nothing published to {base_directory}'
      )
    fileio.rename(staging, os.path.join(base_directory, version))
  finally:
    if fileio.exists(staging):
      fileio.rmtree(staging)
  return version


class Executor(pusher_executor.Executor):
  """TFX's Pusher executor for a filesystem destination, with the de-duplication and the staged
  publish above (TFX's own `Do` copies into the version folder in place)."""

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    model_push = artifact_utils.get_single_instance(
      output_dict[standard_component_specs.PUSHED_MODEL_KEY]
    )
    if not self.CheckBlessing(input_dict):
      self._MarkNotPushed(model_push)
      return
    destination = pusher_pb2.PushDestination()
    proto_utils.json_to_proto(
      exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination
    )
    if destination.WhichOneof('destination') != 'filesystem':
      raise NotImplementedError(
        f'DedupPusher pushes to a filesystem, not {destination.WhichOneof("destination")}'
      )
    if destination.filesystem.versioning not in (
      pusher_pb2.Versioning.AUTO,
      pusher_pb2.Versioning.UNIX_TIMESTAMP,
    ):
      raise NotImplementedError(f'Invalid Versioning {destination.filesystem.versioning}')
    base_directory = destination.filesystem.base_directory
    model_path = self.GetModelPath(input_dict)
    version = find_existing_version(model_path, base_directory)
    if version is not None:
      model_push.set_int_custom_property(ALREADY_SERVING_KEY, 1)
    else:
      examples = input_dict.get(EXAMPLES_KEY)
      version = publish(
        model_path,
        base_directory,
        artifact_utils.get_single_instance(examples) if examples else None,
      )
      logging.info('Model published as version %s of %s.', version, base_directory)
      # As TFX's Pusher: a copy of what was published (warm-up file included) in the PushedModel
      # artifact, for archiving.
      io_utils.copy_dir(os.path.join(base_directory, version), model_push.uri)
    self._MarkPushed(
      model_push, pushed_destination=os.path.join(base_directory, version), pushed_version=version
    )


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
