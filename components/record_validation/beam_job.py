"""The Beam job of one split: read its files record by record, check every record, write both sides.

    files -> read (tfrecord_reader: damaged stretches become bad records) -> check
          -> valid: the record's bytes unchanged -> GZIP TFRecords in shards, as ExampleGen writes them
          -> bad:   quarantine.Entry -> quarantine TFRecords + reasons JSONL
    counts of input / valid / bad records and the first reasons in input order -> counts/<split>.json

Every record read goes to exactly one side, so valid + bad == records read. No step groups the
records themselves (only file names and counts), so the job streams: on the in-memory DirectRunner,
which holds the whole input of a grouping, memory does not grow with the split
(`benchmarks/beam_stages.py`). A file's records are checked by the worker that reads it: a split
spreads over Beam workers file by file (`iouseg convert --shards`).
"""

import json
import os

import apache_beam as beam

from components.record_validation import checks, quarantine, shard_writer, tfrecord_reader

METRICS_NAMESPACE = 'RecordValidator'
FIRST_REASONS = 10
_BAD = 'bad'


class _ReadFile(beam.DoFn):
  def process(self, path: str):
    for record in tfrecord_reader.read_file(path):
      yield path, record


class _CheckRecord(beam.DoFn):
  def __init__(self, split: str, num_classes: int, ignore_label: int):
    super().__init__()
    self._split, self._num_classes, self._ignore_label = split, num_classes, ignore_label
    self._valid = beam.metrics.Metrics.counter(METRICS_NAMESPACE, 'valid_records')
    self._bad = beam.metrics.Metrics.counter(METRICS_NAMESPACE, 'quarantined_records')

  def process(self, element):
    path, record = element
    if record.error is not None:
      verdict = checks.Verdict(f'unreadable input: {record.error}', '', record.data)
    else:
      verdict = checks.check_record(record.data, self._num_classes, self._ignore_label)
    if verdict.reason is None:
      self._valid.inc()
      yield record.data
      return
    self._bad.inc()
    name = (
      verdict.filename
      or verdict.source
      or f'{self._split} record #{record.index} of {os.path.basename(path)}'
    )
    yield beam.pvalue.TaggedOutput(
      _BAD,
      quarantine.Entry(
        split=self._split,
        file=path,
        index=record.index,
        offset=record.offset,
        filename=verdict.filename,
        reason=f'{name}: {verdict.reason}',
        record=verdict.original,
      ),
    )


def _summary(split: str, inputs: int, valid: int, bad: int, first: list) -> str:
  return json.dumps(
    {
      'split': split,
      'input': inputs,
      'valid': valid,
      'quarantined': bad,
      'first_reasons': [reason for _, reason in first],
    }
  )


@beam.ptransform_fn
def ValidateSplit(
  pipeline: beam.Pipeline,
  split: str,
  files: list[str],
  valid_dir: str,
  quarantine_uri: str,
  num_classes: int,
  ignore_label: int,
):
  """Writes the valid records under `valid_dir` (in shards, `shard_writer`) and the bad ones
  into the quarantine artifact."""
  records = (
    pipeline
    | 'Files' >> beam.Create(sorted(files))
    | 'SpreadFiles' >> beam.Reshuffle()
    | 'Read' >> beam.ParDo(_ReadFile())
  )
  checked = records | 'Check' >> beam.ParDo(
    _CheckRecord(split, num_classes, ignore_label)
  ).with_outputs(_BAD, main='valid')
  valid, bad = checked.valid, checked[_BAD]

  _ = valid | 'WriteValid' >> shard_writer.WriteInShards(
    os.path.join(valid_dir, quarantine.RECORDS_FILE_PREFIX)
  )
  _ = (
    bad
    | 'ToExample' >> beam.Map(quarantine.Entry.to_example_bytes)
    | 'WriteBad'
    >> beam.io.WriteToTFRecord(
      os.path.join(quarantine.split_dir(quarantine_uri, split), quarantine.RECORDS_FILE_PREFIX),
      file_name_suffix='.gz',
    )
  )
  _ = (
    bad
    | 'ToJson' >> beam.Map(quarantine.Entry.to_json)
    | 'WriteReasons'
    >> beam.io.WriteToText(
      os.path.join(quarantine_uri, quarantine.REASONS_DIR, split), file_name_suffix='.jsonl'
    )
  )

  singleton = beam.pvalue.AsSingleton
  counts = [
    singleton(records | 'CountInput' >> beam.combiners.Count.Globally()),
    singleton(valid | 'CountValid' >> beam.combiners.Count.Globally()),
    singleton(bad | 'CountBad' >> beam.combiners.Count.Globally()),
    singleton(
      bad
      | 'SortKey' >> beam.Map(lambda entry: (entry.sort_key(), entry.reason))
      | 'First' >> beam.combiners.Top.Smallest(FIRST_REASONS)
    ),
  ]
  return (
    pipeline
    | 'Split' >> beam.Create([split])
    | 'Summary' >> beam.Map(_summary, *counts)
    | 'WriteCounts'
    >> beam.io.WriteToText(
      os.path.join(quarantine_uri, quarantine.COUNTS_DIR, split),
      file_name_suffix='.json',
      shard_name_template='',
    )
  )
