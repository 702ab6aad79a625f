"""`iouseg export`: a pushed model as a TFLite file for the edge (`trainer.tflite`), measured
against the SavedModel it came from on the eval split: mean IoU, size and latency on this CPU.

Both models are scored at the model's resolution, the Evaluator's `mean IoU (model resolution)`:
the SavedModel by its `model_resolution` signature on the raw records, the file on the same images
as Transform places them, each against the transformed label (`trainer.iou`). Latency is per image,
one image a call, for the file in `tf.lite.Interpreter` and for the same function (the SavedModel's
network with the folded normalisation and the class-id rule) in TensorFlow: neither includes
decoding and resizing the image.

Bad input is refused in one line before anything is written: a missing model, missing eval or
calibration records (or a folder without a file) or an output folder that cannot be written exit 2
(the command line's checks, `iouseg.cli`, catch most of them before TensorFlow loads); records
that cannot be read exit 1. The file is written under a temporary name beside the output and renamed once
complete, so no reader ever sees half a file.

Only argparse and the standard library at import time: the `iouseg` parser adds these flags and
must not load TensorFlow (tests/test_kubeflow.py); the work imports it when the command runs.
"""

import argparse
import dataclasses
import os
import tempfile
import time

QUANTIZE_CHOICES = ('none', 'float16', 'int8')
# What the issue asks of each quantisation (mean IoU points below the SavedModel's, size ratio).
IOU_TARGET_POINTS = {'float16': 0.2, 'int8': 1.0}
SIZE_TARGET = {'int8': 0.3}
EXIT_BAD_FLAG, EXIT_BAD_DATA = 2, 1
# Eval records through the SavedModel's signatures at once.
_BATCH = 16


def _first_line(text: str) -> str:
  return (text.splitlines() or [''])[0]


class Refused(Exception):
  """Bad input, in one line, and the exit status it gets."""

  def __init__(self, message: str, exit_status: int):
    super().__init__(message)
    self.exit_status = exit_status


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
    '--model',
    required=True,
    help='a SavedModel, or a serving dir of numbered versions (the newest complete one is used)',
  )
  parser.add_argument('--format', required=True, choices=['tflite'], help='the file format')
  parser.add_argument(
    '--quantize',
    choices=QUANTIZE_CHOICES,
    default='none',
    help='none: float32; float16: float16 weights; int8: int8 weights and activations, '
    'calibrated on --calibration-data (default: %(default)s)',
  )
  parser.add_argument('--output', required=True, help='the file to write, e.g. model.tflite')
  parser.add_argument(
    '--eval-data',
    default='data/demo/eval',
    help='TFRecords (a file, or a folder: every file in it) the file and the SavedModel are '
    'scored on '
    '(default: %(default)s)',
  )
  parser.add_argument(
    '--calibration-data',
    default='data/demo/train',
    help='TFRecords (a file, or a folder: every file in it) of train records whose images '
    'calibrate int8 '
    '(default: %(default)s)',
  )
  parser.add_argument(
    '--calibration-records',
    type=int,
    default=100,
    help='how many of them, the first in file order (default: %(default)s)',
  )
  parser.add_argument(
    '--threads',
    type=int,
    default=1,
    help='CPU threads of the TFLite interpreter and of TensorFlow while latency is measured '
    '(default: %(default)s)',
  )
  parser.add_argument(
    '--verbose',
    action='store_true',
    help='show what TensorFlow and its converter log (dropped otherwise)',
  )


@dataclasses.dataclass
class Measured:
  """One model's figures on the eval split."""

  mean_iou: float
  size_bytes: int
  latency_ms: float


@dataclasses.dataclass
class ExportReport:
  saved_model: str
  output: str
  quantize: str
  input_shape: tuple  # (S, S, C)
  eval_records: int
  calibration_records: int
  threads: int  # of the TFLite interpreter
  tensorflow_threads: int | None  # TensorFlow's intra-op threads; None: its default, every core
  saved: Measured
  exported: Measured
  agreement: float  # the fraction of pixels where the file's class id is the SavedModel's


def _saved_model(path: str) -> str:
  from iouseg import predict

  try:
    return predict.resolve_saved_model(path)
  except FileNotFoundError as error:
    raise Refused(f'--model {error}', EXIT_BAD_FLAG) from None


def _record_files(path: str, flag: str) -> list[str]:
  """[path] for a file, the files in a folder, sorted; Refused when there are none."""
  import tensorflow as tf

  if not tf.io.gfile.isdir(path):
    if not tf.io.gfile.exists(path):
      raise Refused(f'{flag} {path}: no such file or folder', EXIT_BAD_FLAG)
    return [path]
  names = sorted(tf.io.gfile.listdir(path))
  files = [os.path.join(path, n) for n in names if not tf.io.gfile.isdir(os.path.join(path, n))]
  if not files:
    raise Refused(f'{flag} {path}: no files in the folder', EXIT_BAD_FLAG)
  return files


def _read_records(files: list[str], flag: str, limit: int | None = None) -> list:
  """[(file, [serialized records])] up to `limit` records in all; Refused naming the first file
  that is not a readable TFRecord file (GZIP or not), or the files when none holds a record."""
  import tensorflow as tf

  from trainer import data

  read, total = [], 0
  for path in files:
    try:
      records = [r.numpy() for r in data.raw_records(path).take(-1 if limit is None else limit)]
    except tf.errors.OpError as error:
      reason = _first_line(error.message)
      raise Refused(
        f'{flag}: {path}: not a readable TFRecord file ({reason})', EXIT_BAD_DATA
      ) from None
    if records:
      read.append((path, records))
    total += len(records)
    if limit is not None and total >= limit:
      break
  if not total:
    raise Refused(f'{flag}: {", ".join(files)}: no records', EXIT_BAD_DATA)
  return read


def _batches(read: list):
  """(file, a batch of its records) over `_read_records`'s output."""
  for path, records in read:
    for start in range(0, len(records), _BATCH):
      yield path, records[start : start + _BATCH]


def _run_signature(signature, path: str, records: list, flag: str):
  import tensorflow as tf

  try:
    return signature(examples=tf.constant(records))
  except tf.errors.InvalidArgumentError as error:
    reason = _first_line(error.message)
    raise Refused(
      f'{flag}: {path}: a record the model cannot read ({reason})', EXIT_BAD_DATA
    ) from None


def _placed_images(loaded, normalisation, read: list, flag: str) -> list:
  """The records' images as Transform places them, 0..255 [S, S, C] each: the file's input."""
  from trainer import export
  from transform import features

  transform = loaded.signatures[export.TRANSFORM_SIGNATURE]
  return [
    image
    for path, batch in _batches(read)
    for image in normalisation.pixels(
      _run_signature(transform, path, batch, flag)[features.IMAGE].numpy()
    )
  ]


def _tensorflow_threads(threads: int) -> int | None:
  """TensorFlow's intra-op threads set to `threads` unless it already runs in this process (a
  test, a notebook: it cannot change then); what it runs with, None for its default."""
  import tensorflow as tf

  try:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
  except RuntimeError:
    pass
  return tf.config.threading.get_intra_op_parallelism_threads() or None


def _normalisation(loaded, model_path: str):
  """Refused when Transform's normalisation cannot be folded into a fixed-size file."""
  from trainer import tflite

  try:
    return tflite.read_normalisation(loaded)
  except ValueError as error:
    raise Refused(f'--model {model_path}: {error}', EXIT_BAD_FLAG) from None


def _directory_bytes(path: str) -> int:
  import tensorflow as tf

  return sum(
    tf.io.gfile.stat(os.path.join(folder, name)).length
    for folder, _, names in tf.io.gfile.walk(path)
    for name in names
  )


def _timed(fn, *args):
  """(fn(*args), seconds)."""
  start = time.perf_counter()
  result = fn(*args)
  return result, time.perf_counter() - start


def _measure(loaded, normalisation, content: bytes, read: list, threads: int):
  """On the records `read`: {'saved': (mean IoU, median seconds per image), 'exported': the same
  for the file}, the fraction of pixels where the file's class id is the SavedModel's, and the
  number of records."""
  import numpy as np
  import tensorflow as tf

  from trainer import decode, export, iou, tflite
  from transform import features

  transform = loaded.signatures[export.TRANSFORM_SIGNATURE]
  model_resolution = loaded.signatures[export.MODEL_RESOLUTION_SIGNATURE]
  in_tensorflow = tflite.edge_function(loaded, normalisation)
  edge = tflite.EdgeModel(content, threads)
  num_classes = model_resolution.structured_outputs['probabilities'].shape[-1]
  matrices = {'saved': 0, 'exported': 0}
  seconds = {'saved': [], 'exported': []}
  agree = pixels = records = 0
  for path, batch in _batches(read):
    transformed = _run_signature(transform, path, batch, '--eval-data')
    served = _run_signature(model_resolution, path, batch, '--eval-data')['class_ids'].numpy()
    true_ids, valid = decode.labels_to_class_ids_np(transformed[features.LABEL].numpy())
    images = normalisation.pixels(transformed[features.IMAGE].numpy())
    for k, image in enumerate(images):
      class_ids, elapsed = _timed(edge.class_ids, image)
      seconds['exported'].append(elapsed)
      seconds['saved'].append(_timed(in_tensorflow, tf.constant(image[None]))[1])
      for name, predicted in (('saved', served[k]), ('exported', class_ids)):
        matrices[name] = matrices[name] + iou.confusion_matrix(
          true_ids[k], predicted, valid[k], num_classes
        )
      agree += int(np.sum(class_ids == served[k]))
      pixels += class_ids.size
    records += len(batch)
  return (
    {name: (iou.mean_iou(matrices[name]), float(np.median(seconds[name]))) for name in matrices},
    agree / pixels,
    records,
  )


class _AtomicOutput:
  """The output file, written whole or not at all: a temporary file beside it, created on entry
  (so an output that cannot be written is refused before any work), renamed over it by `commit`,
  removed when the block fails."""

  def __init__(self, path: str):
    self.path = os.path.abspath(path)
    if os.path.isdir(self.path):
      raise Refused(f'--output {path}: is a folder', EXIT_BAD_FLAG)
    try:
      fd, self._temporary = tempfile.mkstemp(
        dir=os.path.dirname(self.path), prefix=f'.{os.path.basename(self.path)}.', suffix='.tmp'
      )
    except OSError as error:
      raise Refused(
        f'--output {path}: cannot write there ({error.strerror})', EXIT_BAD_FLAG
      ) from None
    os.close(fd)

  def __enter__(self):
    return self

  def commit(self, content: bytes) -> None:
    with open(self._temporary, 'wb') as f:
      f.write(content)
    os.replace(self._temporary, self.path)

  def __exit__(self, *exc):
    if os.path.exists(self._temporary):
      os.remove(self._temporary)


def export(
  model: str,
  quantize: str,
  output: str,
  eval_data: str,
  calibration_data: str,
  calibration_records: int,
  threads: int = 1,
) -> ExportReport:
  """Converts the model, scores both on `eval_data`, writes the file; Refused on bad input."""
  tensorflow_threads = _tensorflow_threads(threads)  # before TensorFlow starts
  model_path = _saved_model(model)
  eval_files = _record_files(eval_data, '--eval-data')
  calibrated = quantize == 'int8'
  if calibrated:
    calibration_files = _record_files(calibration_data, '--calibration-data')
  with _AtomicOutput(output) as out:
    eval_read = _read_records(eval_files, '--eval-data')
    calibration_read = (
      _read_records(calibration_files, '--calibration-data', calibration_records)
      if calibrated
      else []
    )
    import tensorflow as tf

    from trainer import tflite

    loaded = tf.saved_model.load(model_path)
    normalisation = _normalisation(loaded, model_path)
    calibration = _placed_images(loaded, normalisation, calibration_read, '--calibration-data')
    content = tflite.convert(loaded, normalisation, quantize, calibration[:calibration_records])
    figures, agreement, records = _measure(loaded, normalisation, content, eval_read, threads)
    out.commit(content)
  size = len(content)
  return ExportReport(
    saved_model=model_path,
    output=out.path,
    quantize=quantize,
    input_shape=(normalisation.image_size, normalisation.image_size, len(normalisation.scale)),
    eval_records=records,
    calibration_records=min(len(calibration), calibration_records),
    threads=threads,
    tensorflow_threads=tensorflow_threads,
    saved=Measured(figures['saved'][0], _directory_bytes(model_path), 1e3 * figures['saved'][1]),
    exported=Measured(figures['exported'][0], size, 1e3 * figures['exported'][1]),
    agreement=agreement,
  )


def _target(met: bool, text: str) -> str:
  return f'  (target {text}: {"met" if met else "missed"})'


def format_report(report: ExportReport, eval_data: str) -> str:
  size, channels = report.input_shape[0], report.input_shape[2]
  saved, exported = report.saved, report.exported
  points = 100 * (exported.mean_iou - saved.mean_iou)
  ratio = exported.size_bytes / saved.size_bytes
  iou_target, size_target = IOU_TARGET_POINTS.get(report.quantize), SIZE_TARGET.get(report.quantize)
  calibrated = (
    f', calibrated on {report.calibration_records} records' if report.quantize == 'int8' else ''
  )
  column = f'TFLite {report.quantize}'
  lines = [
    f'Exported {report.saved_model}',
    f'      -> {report.output} (TFLite, quantize {report.quantize}{calibrated})',
    f'Input: float32 [1, {size}, {size}, {channels}], pixels 0..255 placed as Transform places '
    f'them; output: int32 class ids [1, {size}, {size}]',
    f'Eval: {report.eval_records} records of {eval_data}, at the model resolution {size}x{size}',
    f'{"":20}{"SavedModel":>12}{column:>16}',
    f'{"eval mean IoU":20}{saved.mean_iou:12.4f}{exported.mean_iou:16.4f}  {points:+.2f} points'
    + ('' if iou_target is None else _target(abs(points) <= iou_target, f'within {iou_target}')),
    f'{"size":20}{saved.size_bytes / 2**20:8.2f} MiB{exported.size_bytes / 2**20:12.2f} MiB'
    f'  {ratio:.2f}x'
    + ('' if size_target is None else _target(ratio <= size_target, f'<= {size_target}x')),
    f'{"latency per image":20}{saved.latency_ms:9.1f} ms{exported.latency_ms:13.1f} ms'
    f'  median, one image a call; threads: TFLite {report.threads}, TensorFlow '
    f'{report.tensorflow_threads or "all cores"}',
    f"Class ids equal to the SavedModel's: {100 * report.agreement:.2f}% of pixels",
  ]
  return '\n'.join(lines)


def main(args: argparse.Namespace) -> int:
  """`iouseg export`: what TensorFlow and the converter log is held off the terminal (dropped, or
  shown with --verbose); the report goes to stdout, a refusal or a failure in one line to stderr."""
  from pipeline import progress  # imports neither TensorFlow nor TFX

  with progress.third_party_output() as output:
    if args.verbose:
      output.to_terminal()
    else:
      output.to_log(os.devnull)
    try:
      report = export(
        args.model,
        args.quantize,
        args.output,
        args.eval_data,
        args.calibration_data,
        args.calibration_records,
        args.threads,
      )
    except Refused as refused:
      print(f'iouseg export: error: {refused}', file=output.terminal)
      return refused.exit_status
    except Exception as error:  # a converter or TensorFlow failure: one line, --verbose for more
      if args.verbose:
        raise
      print(
        f'iouseg export: failed: {type(error).__name__}: {_first_line(str(error))} '
        '(--verbose shows the traceback)',
        file=output.terminal,
      )
      return 1
  print(format_report(report, args.eval_data))
  return 0
