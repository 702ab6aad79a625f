"""RecordValidator's executor: runs the Beam job over every split, then passes or fails the run.

The run fails (BadRecordsError) when, in any split, quarantined / input records > max_bad_fraction,
after both artifacts are written, with a message naming the counts, the first reasons and the
quarantine's URI. Per split, so that a small eval split that lost most of its records is not hidden
by a large clean train split.
"""

import json
import os
from typing import Any

from absl import logging
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.utils import io_utils

from components.record_validation import beam_job, quarantine
from transform import data_format

# Keys of the component's spec, shared with component.py.
EXAMPLES_KEY = 'examples'
VALID_EXAMPLES_KEY = 'valid_examples'
QUARANTINE_KEY = 'quarantine'
NUM_CLASSES_KEY = 'num_classes'
IGNORE_LABEL_KEY = 'ignore_label'
MAX_BAD_FRACTION_KEY = 'max_bad_fraction'
DEFAULT_MAX_BAD_FRACTION = 0.0
REASONS_IN_MESSAGE = 5


class BadRecordsError(RuntimeError):
  """More bad records than max_bad_fraction allows; the quarantine says which and why."""


def check_settings(num_classes: int, ignore_label: int, max_bad_fraction: float) -> None:
  """The converter's rules for num_classes and ignore_label, and a fraction in [0, 1]."""
  data_format.check_label_settings(num_classes, ignore_label)
  if not 0.0 <= max_bad_fraction <= 1.0:
    raise ValueError(f'max_bad_fraction must be between 0 and 1, got {max_bad_fraction}')


class Executor(base_beam_executor.BaseBeamExecutor):
  def Do(
    self,
    input_dict: dict[str, list[Any]],
    output_dict: dict[str, list[Any]],
    exec_properties: dict[str, Any],
  ) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    num_classes = int(exec_properties[NUM_CLASSES_KEY])
    ignore_label = int(exec_properties.get(IGNORE_LABEL_KEY, data_format.DEFAULT_IGNORE_LABEL))
    max_bad_fraction = float(exec_properties.get(MAX_BAD_FRACTION_KEY, DEFAULT_MAX_BAD_FRACTION))
    check_settings(num_classes, ignore_label, max_bad_fraction)

    examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
    payload_format = examples_utils.get_payload_format(examples)
    if payload_format != example_gen_pb2.FORMAT_TF_EXAMPLE:
      raise ValueError(
        f'RecordValidator reads tf.train.Example records; {examples.uri} holds '
        f'{example_gen_pb2.PayloadFormat.Name(payload_format)}'
      )
    splits = artifact_utils.decode_split_names(examples.split_names)
    valid = artifact_utils.get_single_instance(output_dict[VALID_EXAMPLES_KEY])
    bad = artifact_utils.get_single_instance(output_dict[QUARANTINE_KEY])
    for artifact in (valid, bad):
      artifact.split_names = artifact_utils.encode_split_names(splits)
      for name in ('span', 'version'):
        if examples.has_property(name):
          setattr(artifact, name, getattr(examples, name))
      examples_utils.set_payload_format(artifact, example_gen_pb2.FORMAT_TF_EXAMPLE)

    with self._make_beam_pipeline() as pipeline:
      for split in splits:
        split_uri = artifact_utils.get_split_uri([examples], split)
        valid_dir = artifact_utils.get_split_uri([valid], split)
        # A split with no valid (or no bad) record still gets its folder: readers glob inside it.
        for folder in (valid_dir, quarantine.split_dir(bad.uri, split)):
          fileio.makedirs(folder)
        files = [
          path
          for path in fileio.glob(io_utils.all_files_pattern(split_uri))
          if not fileio.isdir(path)
        ]
        _ = pipeline | f'Validate[{split}]' >> beam_job.ValidateSplit(
          split, files, valid_dir, bad.uri, num_classes, ignore_label
        )

    summary = _write_summary(bad.uri, splits, max_bad_fraction)
    failing = {
      split: counts
      for split, counts in summary['splits'].items()
      if counts['input'] and counts['quarantined'] / counts['input'] > max_bad_fraction
    }
    logging.info('RecordValidator: %s; quarantine at %s', _counts_text(summary['splits']), bad.uri)
    for split, counts in summary['splits'].items():
      if not counts['valid']:
        logging.warning(
          'RecordValidator: split %s has no valid record (%d read)', split, counts['input']
        )
    if failing:
      raise BadRecordsError(_failure_message(failing, max_bad_fraction, bad.uri))


def _write_summary(uri: str, splits: list[str], max_bad_fraction: float) -> dict:
  counts_dir = os.path.join(uri, quarantine.COUNTS_DIR)
  per_split = {}
  for split in splits:
    with fileio.open(os.path.join(counts_dir, f'{split}.json'), 'r') as handle:
      counts = json.loads(handle.read())
    counts.pop('split')
    if counts['valid'] + counts['quarantined'] != counts['input']:
      raise RuntimeError(f'RecordValidator lost records in split {split}: {counts}')
    per_split[split] = counts
  fileio.rmtree(counts_dir)
  summary = {'max_bad_fraction': max_bad_fraction, 'splits': per_split}
  with fileio.open(os.path.join(uri, quarantine.SUMMARY_FILE), 'w') as handle:
    handle.write(json.dumps(summary, indent=2) + '\n')
  return summary


def _counts_text(per_split: dict) -> str:
  return ', '.join(
    f'{split}: {c["quarantined"]} of {c["input"]} records quarantined'
    for split, c in per_split.items()
  )


def _failure_message(failing: dict, max_bad_fraction: float, uri: str) -> str:
  bad = sum(c['quarantined'] for c in failing.values())
  total = sum(c['input'] for c in failing.values())
  reasons = [reason for c in failing.values() for reason in c['first_reasons']][:REASONS_IN_MESSAGE]
  if bad > len(reasons):
    reasons.append(f'... and {bad - len(reasons)} more in the quarantine')
  splits = ', '.join(
    f'{split} {c["quarantined"]} of {c["input"]} ({c["quarantined"] / c["input"]:.1%})'
    for split, c in failing.items()
  )
  return (
    f'{bad} of {total} records are bad, more than max_bad_fraction={max_bad_fraction:g} allows '
    f'({splits}). First reasons:\n  '
    + '\n  '.join(reasons)
    + f'\nQuarantine (each bad record unchanged, with its reason): {uri} '
    f'(summary.json; reasons/*.jsonl; Split-<split>/ TFRecords)'
  )
