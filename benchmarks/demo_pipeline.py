"""Shared by the component benchmarks: the project's pipeline on a demo set of a chosen size.

`prepare` writes the data and returns `pipeline.local_runner.run` arguments; a benchmark then runs
the whole pipeline or part of it (TFX partial runs) and reads each component's seconds back from ML
Metadata, as `iouseg run` would record them.
"""

import os

from tfx import v1 as tfx

from iouseg import demo_data, mlmd_store
from pipeline import beam_runners, settings
from trainer.config import TrainerConfig


def prepare(
  work: str, train_records: int, eval_records: int, pipeline_name: str, **overrides
) -> dict:
  """Writes a demo set under `work` and returns `local_runner.run` keyword arguments (cache off,
  in-memory Beam, a few train steps); `overrides` replace any of them."""
  data_root = os.path.join(work, 'data')
  demo_data.write_demo_data(data_root, train_records, eval_records)
  return {
    'metadata_path': os.path.join(work, 'metadata.sqlite'),
    'beam_pipeline_args': beam_runners.beam_args('in_memory'),
    'paths': settings.PipelinePaths(
      pipeline_name=pipeline_name,
      pipeline_root=os.path.join(work, 'root'),
      data_root=data_root,
      serving_model_dir=os.path.join(work, 'serving'),
    ),
    'data': settings.DataSettings(split_patterns=settings.SPLIT_PATTERNS),
    'training': settings.TrainingSettings(
      TrainerConfig(), tfx.proto.TrainArgs(num_steps=30), tfx.proto.EvalArgs(num_steps=1)
    ),
    'blessing': settings.BlessingSettings(min_mean_iou=0.0),
    'enable_cache': False,
    **overrides,
  }


def seconds(run_args: dict, node: str) -> float:
  """Seconds of `node`'s execution in the latest run."""
  start, end = mlmd_store.component_spans(
    run_args['metadata_path'], run_args['paths'].pipeline_name
  )[node]
  return end - start
