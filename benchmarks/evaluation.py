"""Evaluation benchmark: the Evaluator's TFMA run against the model's own predictions on the same
eval split plus a numpy confusion matrix (the limit).

    .venv/bin/python benchmarks/evaluation.py [--eval-records 3000]

Runs the whole pipeline (a short training: the cost of evaluation does not depend on the model's
quality) on the demo train split and an eval split of the given size, and on a small eval split to
measure the Evaluator's start-up (Beam pipeline construction, model loading, tracing). The Evaluator's seconds are its execution span in ML Metadata. The
limit loads the Trainer's SavedModel, reads the same eval records (the RecordValidator's output that
TFMA reads) in batches, calls the signature TFMA calls (`evaluation_sums`: per-example confusion
matrices at each image's own resolution) and adds them up with numpy. Both mean IoUs are printed:
they must agree. Target: TFMA <= 1.25 x over the whole run.
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf
from tfx.types import artifact_utils
from tfx.utils import path_utils

from iouseg import mlmd_store, run_summary
from pipeline import local_runner
from trainer import iou

import demo_pipeline
import report_table
import tf_env  # noqa: F401  (first: sets up TensorFlow)

PIPELINE_NAME = 'evaluation-benchmark'
TARGET = 1.25
BATCH_SIZE = 64
LIMIT_TURNS = 3


def predict_and_count(model_dir: str, eval_pattern: str, num_classes: int):
  """The limit: (start-up seconds: load and first batch, total seconds, mean IoU)."""
  start = time.perf_counter()
  sums = tf.saved_model.load(model_dir).signatures['evaluation_sums']
  matrix = np.zeros((num_classes, num_classes), np.int64)
  records = tf.data.TFRecordDataset(tf.io.gfile.glob(eval_pattern), compression_type='GZIP')
  startup = None
  for batch in records.batch(BATCH_SIZE).prefetch(tf.data.AUTOTUNE):
    matrix += sums(examples=batch)['confusion_matrix'].numpy().sum(axis=0)
    startup = startup or time.perf_counter() - start
  return startup, time.perf_counter() - start, iou.mean_iou(matrix)


def evaluator_run(work: str, eval_records: int):
  """(run arguments, Evaluator seconds) of a whole pipeline run with an eval split of the size."""
  run_args = demo_pipeline.prepare(work, 192, eval_records, PIPELINE_NAME)
  local_runner.run(**run_args)
  return run_args, demo_pipeline.seconds(run_args, 'Evaluator')


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--eval-records', type=int, default=3000)
  parser.add_argument(
    '--small-records', type=int, default=48, help='eval records of the run that measures start-up'
  )
  parser.add_argument('--out', help='also write the markdown here')
  args = parser.parse_args(argv)
  with tempfile.TemporaryDirectory() as work:
    _, tfma_startup = evaluator_run(os.path.join(work, 'small'), args.small_records)
    run_args, tfma_seconds = evaluator_run(os.path.join(work, 'large'), args.eval_records)
    summary = run_summary.latest_run(run_args['metadata_path'], PIPELINE_NAME)
    examples = mlmd_store.latest_outputs(
      run_args['metadata_path'], PIPELINE_NAME, 'RecordValidator'
    )['valid_examples']
    # The limit is short and one run of it moves with whatever else the cores do: the median of
    # LIMIT_TURNS runs (by total seconds).
    turns = [
      predict_and_count(
        path_utils.serving_model_path(summary.model_uri),
        os.path.join(artifact_utils.get_split_uri(examples, 'eval'), '*'),
        run_args['training'].trainer_config.data.num_classes,
      )
      for _ in range(LIMIT_TURNS)
    ]
    limit_startup, limit_seconds, limit_iou = sorted(turns, key=lambda t: t[1])[LIMIT_TURNS // 2]
    limit_range = f'{min(t[1] for t in turns):.1f}-{max(t[1] for t in turns):.1f}'

  tfma_rate = (args.eval_records - args.small_records) / (tfma_seconds - tfma_startup)
  limit_rate = (args.eval_records - BATCH_SIZE) / (limit_seconds - limit_startup)
  lines = [
    '| what | seconds | start-up seconds | images/s beyond start-up | mean IoU |',
    '| --- | --- | --- | --- | --- |',
    f'| Evaluator (TFMA) | {tfma_seconds:.1f} | {tfma_startup:.1f} | {tfma_rate:.1f} | '
    f'{summary.candidate_metrics["mean_iou"]:.4f} |',
    f'| model signatures + numpy confusion matrix (the limit) | {limit_seconds:.1f} | '
    f'{limit_startup:.1f} | {limit_rate:.1f} | {limit_iou:.4f} |',
  ]
  lines += [
    '',
    f'Target: TFMA <= {TARGET} x the limit (measured {tfma_seconds / limit_seconds:.2f} over '
    f'the whole run, {limit_rate / tfma_rate:.2f} beyond start-up). Data: {args.eval_records} '
    f'eval demo records. TFMA start-up: the Evaluator of a {args.small_records}-record run; '
    f"the limit's: loading the model and its first batch of {BATCH_SIZE}; the limit's row is the "
    f'median of {LIMIT_TURNS} runs by total seconds ({limit_range} s).',
  ]
  return report_table.publish(lines, args.out, 'evaluation.py')


if __name__ == '__main__':
  sys.exit(main())
