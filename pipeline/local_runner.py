"""Runs the pipeline on this machine: LocalDagRunner, ML Metadata in SQLite or on a MySQL server
(`pipeline.metadata`), Beam's DirectRunner."""

import os
from typing import TextIO

from tfx import v1 as tfx
from tfx.orchestration.pipeline import RunOptions

from pipeline import beam_runners, metadata, settings
from pipeline import pipeline as pipeline_lib
from pipeline import progress as progress_lib


def split_patterns_for(data_root: str) -> dict | None:
  """`settings.SPLIT_PATTERNS` when `data_root` has both split folders, else None (the pipeline
  then hash-splits all files found directly under `data_root`)."""
  has_splits = all(
    os.path.isdir(os.path.join(data_root, split)) for split in settings.SPLIT_PATTERNS
  )
  return settings.SPLIT_PATTERNS if has_splits else None


def run(
  metadata_path: str,
  paths: settings.PipelinePaths,
  data: settings.DataSettings,
  training: settings.TrainingSettings,
  blessing: settings.BlessingSettings,
  extras: settings.OptionalComponents | None = None,
  *,
  beam_pipeline_args: list[str] | None = None,
  enable_cache: bool = True,
  run_options: RunOptions | None = None,
  progress: TextIO | None = None,
) -> dict | None:
  """Builds the pipeline of the settings (see `create_pipeline`) and runs it to completion; Beam
  runs in memory in this process unless `beam_pipeline_args` choose otherwise. `run_options` runs
  part of it (TFX's partial run: the nodes between `from_nodes` and `to_nodes`, the rest of their
  inputs taken from the previous run). With a `progress` stream, prints a line to it as each
  component starts and finishes (`pipeline.progress`) and returns {node id: state}."""
  if not metadata.is_server(metadata_path):  # an SQLite file, made with its folder
    os.makedirs(os.path.dirname(os.path.abspath(metadata_path)), exist_ok=True)
  pipeline = pipeline_lib.create_pipeline(
    paths,
    data,
    training,
    blessing,
    extras,
    metadata_connection_config=metadata.connection_config(metadata_path),
    beam_pipeline_args=beam_runners.with_local_dependencies(
      beam_pipeline_args or beam_runners.beam_args('in_memory')
    ),
    enable_cache=enable_cache,
  )
  if progress is None:
    with metadata.passwords_redacted():
      tfx.orchestration.LocalDagRunner().run(pipeline, run_options=run_options)
    return None
  watcher = progress_lib.ComponentProgress(
    metadata_path, pipeline.pipeline_info.pipeline_name, len(pipeline.components), progress
  )
  with metadata.passwords_redacted(), watcher.attached():
    tfx.orchestration.LocalDagRunner().run(pipeline, run_options=run_options)
  return watcher.states
