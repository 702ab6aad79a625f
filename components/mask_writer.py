"""MaskWriter: TFX BulkInferrer's PredictionLogs of the `masks` signature -> one PNG per record + index.

Batch inference on unlabelled records is two Beam jobs:

  InferenceExampleGen -> BulkInferrer (model: the Trainer's, model_blessing: the Evaluator's; runs
  the model's `masks` signature, `trainer.export`) -> MaskWriter (this component)

TFX 1.16's BulkInferrer writes, per input record, a `PredictionLog` whose `predict_log.request` holds
the serialized input example and whose `predict_log.response.outputs` hold the signature's outputs
split along the batch (`tfx_bsl`'s predict handler), GZIP TFRecords `prediction_logs-*.gz` in its
`inference_result`. When the blessing says no, it writes nothing and returns. The `masks` signature
already returns each record's mask as a PNG of class ids at the image's own size, so nothing per
pixel travels as floats; this component only names and stores them.

Output (`masks`, a `Dataset` artifact):
  masks/<name>.mask.png   8-bit grayscale PNG of class ids, the image's height and width
  index.csv               header `record,mask,height,width,error`; one row per input record (no
                          order): record = the record's image/filename, or `sha256:<hex>` of its
                          image/encoded when it has none; mask = the path relative to the artifact;
                          error = '' or, for a record whose image could not be segmented (missing,
                          undecodable, a channel count other than 1, 3 or 4), the reason, with mask,
                          height and width empty
<name> is the file name's stem (as `iouseg predict` names its outputs) with characters outside
[A-Za-z0-9._-] replaced by '_', or `record-<first 16 hex of the sha256>`; when two different records
would share a name, each gets `-<first 10 hex of its image's sha256>` appended.

Every mask is checked before it is written: it decodes as an 8-bit grayscale PNG, has the height and
width the signature measured on the image, and holds class ids below `num_classes` only; a failure
stops the run naming the record (a wrong mask is the model's or this code's fault, not the input's).

A bad input image does not stop the run: the `masks` signature reports it in its `error` output
instead of failing the batch (`export.image_errors`), and its index row names the record and the
reason, in the converter's words where they say more (`image_checks.image_from_bytes`: Pillow's
reading of the same bytes). Custom properties: `mask_count` (int, masks written), `failed_count`
(int, records without a mask) and, when nothing was inferred, `skipped` (why).
"""

import csv
import hashlib
import io
import os
import re
from collections.abc import Iterable

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.io.filesystems import FileSystems
from PIL import Image
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tfx import v1 as tfx
from tfx.dsl.io import fileio
from tfx.types.experimental import simple_artifacts

from trainer import export
from transform import data_format, image_checks

INDEX_FILE = 'index.csv'
MASKS_DIR = 'masks'
INDEX_HEADER = ('record', 'mask', 'height', 'width', 'error')
MASK_COUNT_KEY = 'mask_count'
FAILED_COUNT_KEY = 'failed_count'
SKIPPED_KEY = 'skipped'
# Where BulkInferrer (TFX 1.16, bulk_inferrer/executor.py) writes inside its inference_result.
_PREDICTION_LOGS = 'prediction_logs*'
_MAX_STEM = 100


class BadMaskError(ValueError):
  pass


def _output(predict_log, key: str):
  tensor = predict_log.response.outputs.get(key)
  if tensor is None:
    raise KeyError(
      f'the PredictionLog has no output {key!r} (outputs: '
      f'{sorted(predict_log.response.outputs)}): did BulkInferrer run the '
      f'{export.MASKS_SIGNATURE!r} signature?'
    )
  return tensor


def _scalar(tensor):
  """The one value of a per-example output ([1] or [1, 1]: the example's slice of the batch)."""
  values = tf.make_ndarray(tensor).reshape(-1)
  if values.size != 1:
    raise ValueError(f'expected one value per example, got {values.size}')
  return values[0]


def _request_image(predict_log) -> bytes:
  """The image/encoded bytes of the record the log answers (b'' when it has none)."""
  (request,) = predict_log.request.inputs.values()
  example = example_pb2.Example.FromString(request.string_val[0])
  values = example.features.feature[data_format.IMAGE_ENCODED].bytes_list.value
  return values[0] if values else b''


def input_error(image: bytes, signature_error: str) -> str:
  """Why a record was not segmented: the converter's reason for its image when it has one (it names
  the decoder's complaint), else the signature's."""
  try:
    image_checks.image_from_bytes('image', image)
  except image_checks.BadFile as bad:
    return bad.reason
  return signature_error


def _stem(filename: str) -> str:
  stem = os.path.splitext(os.path.basename(filename.rstrip('/')))[0]
  return re.sub(r'[^A-Za-z0-9._-]', '_', stem)[:_MAX_STEM] or '_'


def parse_log(predict_log_bytes: bytes) -> tuple[str, dict]:
  """(mask stem, entry): the record name, its image's sha256, the PNG and the measured size."""
  predict_log = prediction_log_pb2.PredictionLog.FromString(predict_log_bytes).predict_log
  filename = _scalar(_output(predict_log, export.FILENAME)).decode('utf-8', 'replace')
  image = _request_image(predict_log)
  sha = hashlib.sha256(image).hexdigest()
  # A model exported before the signature had `error` fails the batch on a bad image instead.
  error = b''
  if export.ERROR in predict_log.response.outputs:
    error = _scalar(_output(predict_log, export.ERROR))
  entry = dict(
    record=filename or f'sha256:{sha}',
    sha=sha,
    png=_scalar(_output(predict_log, export.MASKS)),
    height=int(_scalar(_output(predict_log, export.HEIGHT))),
    width=int(_scalar(_output(predict_log, export.WIDTH))),
    error=input_error(image, error.decode('utf-8', 'replace')) if error else '',
  )
  return (_stem(filename) if filename else f'record-{sha[:16]}'), entry


def check_mask(entry: dict, num_classes: int) -> None:
  """BadMaskError naming the record unless the PNG is 8-bit grayscale class ids at the image's size."""
  try:
    with Image.open(io.BytesIO(entry['png'])) as image:
      mode, ids = image.mode, np.asarray(image)
  except Exception as error:
    raise BadMaskError(f'{entry["record"]}: the mask does not decode ({error})') from error
  if mode != 'L':
    raise BadMaskError(f'{entry["record"]}: the mask is a {mode} PNG, expected 8-bit grayscale')
  if ids.shape != (entry['height'], entry['width']):
    raise BadMaskError(
      f'{entry["record"]}: the mask is {ids.shape[0]}x{ids.shape[1]} (HxW) but '
      f'the image is {entry["height"]}x{entry["width"]}'
    )
  if ids.size and int(ids.max()) >= num_classes:
    raise BadMaskError(
      f'{entry["record"]}: the mask holds class id {int(ids.max())}, '
      f'expected ids below {num_classes}'
    )


def unique_names(stem: str, entries: Iterable[dict]) -> Iterable[tuple[str, dict]]:
  """(mask file name, entry) per distinct image: the stem alone when one image has it, else the stem
  and each image's hash. The same image twice under one name is written once."""
  distinct = {}
  for entry in entries:
    distinct.setdefault((entry['record'], entry['sha']), entry)
  shared = len({sha for _, sha in distinct}) > 1
  for (_, sha), entry in sorted(distinct.items()):
    yield (f'{stem}-{sha[:10]}' if shared else stem) + '.mask.png', entry


def _index_row(entry: dict, mask_path: str) -> str:
  buffer = io.StringIO()
  if entry['error']:
    row = [entry['record'], '', '', '', entry['error']]
  else:
    row = [entry['record'], mask_path, entry['height'], entry['width'], '']
  csv.writer(buffer, lineterminator='').writerow(row)
  return buffer.getvalue()


class _WriteMasks(beam.DoFn):
  def __init__(self, output_uri: str, num_classes: int):
    self._output_uri = output_uri
    self._num_classes = num_classes

  def process(self, grouped):
    stem, entries = grouped
    for name, entry in unique_names(stem, entries):
      if entry['error']:
        beam.metrics.Metrics.counter('iouseg', 'records_failed').inc()
        yield _index_row(entry, '')
        continue
      check_mask(entry, self._num_classes)
      relative = f'{MASKS_DIR}/{name}'
      with FileSystems.create(FileSystems.join(self._output_uri, MASKS_DIR, name)) as f:
        f.write(entry['png'])
      beam.metrics.Metrics.counter('iouseg', 'masks_written').inc()
      yield _index_row(entry, relative)


def write_masks(
  pipeline: beam.Pipeline, log_pattern: str, output_uri: str, num_classes: int
) -> None:
  """The Beam job: PredictionLogs -> PNG files and the index."""
  _ = (
    pipeline
    | 'ReadPredictionLogs' >> beam.io.ReadFromTFRecord(log_pattern)
    | 'Parse' >> beam.Map(parse_log)
    | 'ByName' >> beam.GroupByKey()
    | 'WriteMasks' >> beam.ParDo(_WriteMasks(output_uri, num_classes))
    | 'WriteIndex'
    >> beam.io.WriteToText(
      os.path.join(output_uri, INDEX_FILE), shard_name_template='', header=','.join(INDEX_HEADER)
    )
  )


def _count_rows(index_path: str) -> tuple[int, int]:
  """(rows with a mask, rows with an error) of the index."""
  with fileio.open(index_path, 'r') as f:
    rows = list(csv.DictReader(f))
  failed = sum(1 for row in rows if row['error'])
  return len(rows) - failed, failed


@tfx.dsl.components.component(use_beam=True)
def MaskWriter(
  inference_result: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.InferenceResult],
  model_blessing: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelBlessing],
  masks: tfx.dsl.components.OutputArtifact[simple_artifacts.Dataset],
  num_classes: tfx.dsl.components.Parameter[int],
  beam_pipeline: tfx.dsl.components.BeamComponentParameter[beam.Pipeline] = None,
) -> None:
  """Writes `masks/<name>.mask.png` per record and `index.csv` (see the module docstring) from
  BulkInferrer's PredictionLogs of the `masks` signature; writes an empty index when BulkInferrer
  skipped (model not blessed) or had no records."""
  index_path = os.path.join(masks.uri, INDEX_FILE)
  logs = fileio.glob(os.path.join(inference_result.uri, _PREDICTION_LOGS))
  skipped = None
  if not model_blessing.get_int_custom_property('blessed'):
    skipped = 'the model was not blessed (BulkInferrer ran no inference)'
  elif not logs:
    skipped = 'BulkInferrer wrote no predictions'
  if skipped:
    fileio.makedirs(masks.uri)
    with fileio.open(index_path, 'w') as f:
      f.write(','.join(INDEX_HEADER) + '\n')
    masks.set_string_custom_property(SKIPPED_KEY, skipped)
  else:
    with beam_pipeline as pipeline:
      write_masks(
        pipeline, os.path.join(inference_result.uri, _PREDICTION_LOGS), masks.uri, num_classes
      )
  count, failed = _count_rows(index_path)
  if not count and not failed and not skipped:
    masks.set_string_custom_property(
      SKIPPED_KEY, 'BulkInferrer wrote no predictions (no input records)'
    )
  masks.set_int_custom_property(MASK_COUNT_KEY, count)
  masks.set_int_custom_property(FAILED_COUNT_KEY, failed)
