"""ImportExampleGen that survives damaged input files, so the RecordValidator can report them.

TFX's ImportExampleGen reads with Beam's ReadFromTFRecord, which fails the whole run on the first bad
CRC or truncated file, with a ValueError holding a hex dump of the record ('Not a valid TFRecord.
Mismatch of data mask: ...' / '... Fewer than N bytes: ...') that names neither the file nor the
position. This executor reads each input file record by record (`tfrecord_reader`): good records pass
unchanged; each damaged stretch becomes one record wrapping its raw bytes with the file and byte
offset (`unreadable`), which the RecordValidator quarantines with that reason. Splits, hashing and
properties are ImportExampleGen's own code; the write is not: TFX shuffles each split before writing
it (`write_split.WriteSplit`'s Reshuffle), and the in-memory DirectRunner holds a shuffle's whole
input, so memory grew with the records (1,401 -> 7,578 MiB from 2,000 to 20,000 VOC-sized records,
`benchmarks/beam_stages.py`; 904 MiB at both now). Here
each split streams into GZIP TFRecord shards (`shard_writer`) with ExampleGen's file names; the order
inside a split is the input's, and the Trainer shuffles.

Use `TolerantImportExampleGen` wherever `tfx.components.ImportExampleGen` is used (same arguments).
Its default component id is the class name; `.with_id('ImportExampleGen')` keeps an existing id.
Only the RecordValidator should read its output directly.
"""

import os
from typing import Any

import apache_beam as beam
from tfx.components.example_gen import utils, write_split
from tfx.components.example_gen.import_example_gen import component as import_component
from tfx.components.example_gen.import_example_gen import executor as import_executor
from tfx.components.util import examples_utils
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.record_validation import quarantine, shard_writer, tfrecord_reader, unreadable


class _ReadTolerantly(beam.DoFn):
  def process(self, path: str):
    for record in tfrecord_reader.read_file(path):
      if record.error is None:
        yield record.data
      else:
        yield unreadable.make_record(record.data, path, record.error)


@beam.ptransform_fn
def _ImportRecords(
  pipeline: beam.Pipeline, exec_properties: dict[str, Any], split_pattern: str
) -> beam.pvalue.PCollection:
  pattern = os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY], split_pattern)
  files = sorted(path for path in fileio.glob(pattern) if not fileio.isdir(path))
  if not files:
    raise ValueError(f'no input file matches {pattern}')
  return (
    pipeline
    | 'Files' >> beam.Create(files)
    | 'SpreadFiles' >> beam.Reshuffle()
    | 'ReadTolerantly' >> beam.ParDo(_ReadTolerantly())
  )


class Executor(import_executor.Executor):
  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    return _ImportRecords

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    payload_format = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
    if payload_format not in (None, example_gen_pb2.FORMAT_TF_EXAMPLE):
      raise ValueError('TolerantImportExampleGen reads TFRecords of tf.train.Example only')
    # BaseExampleGenExecutor.Do with the streaming write (see the module's docstring).
    self._log_startup(input_dict, output_dict, exec_properties)
    input_config = proto_utils.json_to_proto(
      exec_properties[standard_component_specs.INPUT_CONFIG_KEY], example_gen_pb2.Input()
    )
    output_config = proto_utils.json_to_proto(
      exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], example_gen_pb2.Output()
    )
    outputs = output_dict[standard_component_specs.EXAMPLES_KEY]
    examples = artifact_utils.get_single_instance(outputs)
    examples.split_names = artifact_utils.encode_split_names(
      utils.generate_output_split_names(input_config, output_config)
    )
    with self._make_beam_pipeline() as pipeline:
      for split, records in self.GenerateExamplesByBeam(pipeline, exec_properties).items():
        # The RecordValidator's Beam workers read this split file by file.
        prefix = os.path.join(
          artifact_utils.get_split_uri(outputs, split), quarantine.RECORDS_FILE_PREFIX
        )
        _ = records | f'WriteSplit[{split}]' >> shard_writer.WriteInShards(prefix)
    examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
    file_format = exec_properties.get(standard_component_specs.OUTPUT_FILE_FORMAT_KEY)
    if file_format:
      examples_utils.set_file_format(examples, write_split.to_file_format_str(file_format))


class TolerantImportExampleGen(import_component.ImportExampleGen):
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
