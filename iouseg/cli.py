"""`iouseg`: the project's command-line tool, one subcommand per job (`iouseg COMMAND --help`)."""

import os

# TFX 1.16 needs Keras 2; TF 2.16 gives Keras 3 unless told before TensorFlow is first imported.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
# TF's C++ start-up logs CUDA-plugin registration "errors" even without a GPU; real op failures
# still reach the user as Python exceptions.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import warnings

# google-cloud libraries (imported by TFX) warn about Python 3.10 support on every start.
warnings.filterwarnings('ignore', category=FutureWarning, module=r'google\.')

import argparse
import sys


class _OneLineErrors(argparse.ArgumentParser):
  """argparse's parser, whose errors (a value of the wrong type, not a choice, a missing flag) are
  one line, `PROG: error: MESSAGE` naming the flag, without the usage, which is a screen long; exit
  status 2 as before. Subcommand parsers are of their parent's class."""

  def error(self, message):
    self.exit(2, f'{self.prog}: error: {message}\n')


def _demo_data(args) -> int:
  from iouseg import demo_data

  paths = demo_data.write_demo_data(
    args.output, args.train_count, args.eval_count, args.size, args.seed
  )
  for split, path in paths.items():
    print(f'{split}: {path}')
  return 0


def _add_demo_data(sub):
  p = sub.add_parser(
    'demo-data',
    help='write the synthetic demo set as TFRecords',
    description='Writes OUTPUT/train/demo.tfrecord and '
    'OUTPUT/eval/demo.tfrecord: shapes (disc, square, triangle) on textured '
    'backgrounds, 4 classes.',
  )
  p.add_argument('--output', default='data/demo', help='output folder (default: %(default)s)')
  p.add_argument(
    '--train-count', type=int, default=192, help='train records (default: %(default)s)'
  )
  p.add_argument('--eval-count', type=int, default=48, help='eval records (default: %(default)s)')
  p.add_argument(
    '--size', type=int, default=96, help='image height and width (default: %(default)s)'
  )
  p.add_argument('--seed', type=int, default=42, help='random seed (default: %(default)s)')
  p.set_defaults(func=_demo_data, check_settings=_check_demo_data)


def _check_demo_data(args) -> None:
  from pipeline import flags

  flags.check_values(
    args, at_least={'train_count': 1, 'eval_count': 1, 'size': 1}, writable=('output',)
  )


def _add_run(sub):
  from pipeline import flags, metadata

  p = sub.add_parser(
    'run',
    help='run the whole pipeline locally (LocalDagRunner, SQLite or MySQL metadata)',
    description='Runs ImportExampleGen -> ... -> Evaluator -> Pusher on this '
    'machine (Beam DirectRunner in memory unless --beam-arg says otherwise) and '
    'prints a summary read back from ML Metadata. Without train/ and eval/ '
    'folders under --data-root the records are split 3:1 by hash.',
  )
  groups = flags.add_pipeline_arguments(
    p,
    path_defaults={
      'data_root': 'data/demo',
      'pipeline_root': 'runs/pipeline_root',
      'serving_dir': 'runs/serving',
    },
  )
  groups['paths'].add_argument(
    '--metadata',
    default='runs/metadata.sqlite',
    help='ML Metadata: an SQLite file, or a MySQL/MariaDB database mysql://USER@HOST:PORT/DB '
    '(docs/metadata.md) (default: %(default)s)',
  )
  metadata.add_password_file_argument(groups['paths'])
  groups['runtime'].add_argument(
    '--verbose',
    action='store_true',
    help='show the logs and warnings of TFX, Beam and TensorFlow on '
    'stderr instead of writing them to '
    'PIPELINE_ROOT/logs/run-<time>.log',
  )
  p.set_defaults(func=_run)


def _run(args) -> int:
  """`iouseg run`. Third-party output (what TFX, Beam and TensorFlow log, from TensorFlow's C++
  start-up on) is held from here to the end of the run and goes to PIPELINE_ROOT/logs/ or, with
  --verbose, to the terminal. Nothing logs before: the parser imports neither TensorFlow nor TFX."""
  from pipeline import progress  # imports neither TensorFlow nor TFX

  with progress.third_party_output() as output:
    return _run_holding_stderr(args, output)


def _run_holding_stderr(args, output) -> int:
  """`_run` with `output`, a `pipeline.progress.ThirdPartyOutput`, holding stderr."""
  import logging

  from pipeline import progress

  for path in ('data_root', 'pipeline_root', 'serving_dir'):
    setattr(args, path, os.path.abspath(getattr(args, path)))
  if args.infer_data:
    args.infer_data = os.path.abspath(args.infer_data)
  error = _run_settings_error(args)
  if error:  # before anything is written: no pipeline root, no log, no component
    return _settings_refused('iouseg run', error, output, args.verbose)
  log_path = None if args.verbose else progress.log_path_for(args.pipeline_root)
  if log_path:
    output.to_log(log_path)
  else:
    output.to_terminal()
  from iouseg import run_summary
  from pipeline import flags, local_runner

  try:
    local_runner.run(
      args.metadata,
      progress=sys.stdout,
      **flags.create_pipeline_kwargs(args, local_runner.split_patterns_for(args.data_root)),
    )
    text = run_summary.format_summary(
      run_summary.latest_run(args.metadata, args.pipeline_name), log_path
    )
  except Exception as e:  # everything a run can raise: one line here, the traceback in the log
    if log_path is None:
      raise  # --verbose: the traceback, as Python prints it
    logging.exception('iouseg run failed')  # the traceback goes to the log
    print(f'Error: {type(e).__name__}: {_error_text(e)}', file=output.terminal)
    print(f'Log (TFX, Beam, TensorFlow; the traceback): {log_path}', file=output.terminal)
    return 1
  print(text)
  return 0


def _error_text(error) -> str:
  """What the terminal shows of the error a run failed on: the project's own messages whole (a
  bad-records failure lists its first reasons line by line); an I/O error of the OS or TensorFlow
  (a full disk, a read-only folder) only its first line, which names the path and the reason, and
  without TensorFlow's `{{function_node ...}}` prefix: the rest is in the log, with the
  traceback."""
  import re

  text = str(error)
  if isinstance(error, OSError) or type(error).__module__.startswith('tensorflow.'):
    text = re.sub(r'\{\{function_node [^}]*\}\}\s*', '', text).split('\n', 1)[0]
  return text


def _run_settings_error(args):
  """The first bad setting of `iouseg run` as one line naming its flag, or None."""
  from pipeline import flags, metadata

  try:
    flags.check_args(args)
    flags.check_values(args, writable=('pipeline_root', 'serving_dir', 'metadata'))
    # From here on the URL carries the password file, for every reader of the store.
    args.metadata = metadata.with_password_file(args.metadata, args.metadata_password_file)
    from pipeline import local_runner  # imports TFX: after the checks that need none

    flags.check_data_root(args.data_root, local_runner.split_patterns_for(args.data_root))
    metadata.check_server(args.metadata)  # last: it connects, and creates a missing database
  except ValueError as e:
    return str(e)
  return None


def _settings_refused(prog: str, error, output=None, verbose: bool = False) -> int:
  """A bad setting: one line on the terminal, `PROG: error: ...` as argparse's `parser.error`
  writes it (without the usage, which is a screen long), and exit status 2. What the libraries
  logged while loading is dropped with `output` holding stderr, unless --verbose."""
  if output is not None:
    if verbose:
      output.to_terminal()
    else:
      output.to_log(os.devnull)
  print(f'{prog}: error: {error}', file=output.terminal if output is not None else sys.stderr)
  return 2


def _add_predict(sub):
  from trainer.config import INFERENCE_MODES

  p = sub.add_parser(
    'predict',
    help='segment image files with a pushed model',
    description="Runs the SavedModel's masks signature (what batch inference runs) on each "
    'image and writes a PNG of class ids (same size as the image) per input.',
    epilog='A file that cannot be segmented (unreadable, not a PNG or JPEG, undecodable, not 1, 3 '
    'or 4 channels) is named with its reason on stderr and passed over; the exit status is then 1.',
  )
  p.add_argument(
    '--model',
    required=True,
    help='a SavedModel, or a serving dir of numbered versions (the latest is used)',
  )
  p.add_argument('--output', required=True, help='folder for <image stem>.mask.png files')
  p.add_argument(
    '--inference',
    choices=INFERENCE_MODES,
    help='a model trained with --resize none: predict each image whole or by sliding window '
    "instead of the way the model was exported with (default: the model's own)",
  )
  p.add_argument('images', nargs='+', help='PNG or JPEG files')
  p.set_defaults(func=_predict, check_settings=_check_predict)


def _check_predict(args) -> None:
  """The model and the output folder; each image is checked as it is read (a bad one is named and
  passed over, the exit status 1)."""
  from pipeline import flags

  flags.check_values(args, existing=('model',), writable=('output',))


def _predict(args) -> int:
  from iouseg import predict

  failed = 0
  try:
    signature = predict.load_signature(args.model, args.inference)
  except ValueError as e:  # the model has no such inference mode
    return _settings_refused('iouseg predict', e)
  for image, written, reason in predict.predict_files(signature, args.images, args.output):
    if reason is None:
      print(f'{image} -> {written}')
    else:
      failed += 1
      print(f'{image}: not segmented: {reason}', file=sys.stderr)
  if failed:
    print(f'{failed} of {len(args.images)} images not segmented', file=sys.stderr)
  return 1 if failed else 0


def _add_export(sub):
  from iouseg import export_model

  p = sub.add_parser(
    'export',
    help='export a pushed model for the edge (TFLite), scored against the SavedModel',
    description="Converts a pushed model with TensorFlow's TFLite converter into a file that "
    'takes a float32 image of the model size (pixel values 0..255) and returns class ids, then '
    "prints the file's eval mean IoU, size and latency on this CPU against the SavedModel's.",
    epilog='What the caller prepares, quantisation and measured figures: docs/export.md.',
  )
  export_model.add_arguments(p)
  p.set_defaults(func=export_model.main, check_settings=_check_export)


def _check_export(args) -> None:
  """The counts, the paths read (calibration records only for int8) and the output; what the
  model and the records hold is checked as they are read (`iouseg.export_model`), before anything
  is written."""
  from pipeline import flags

  calibration = ('calibration_data',) if args.quantize == 'int8' else ()
  flags.check_values(
    args,
    at_least={'calibration_records': 1, 'threads': 1},
    existing=('model', 'eval_data', *calibration),
    writable=('output',),
  )


def _add_convert(sub):
  from iouseg import converters

  p = sub.add_parser(
    'convert',
    help='image/mask folders or PASCAL VOC -> TFRecords',
    description=converters.__doc__.split('\n', 1)[0],
    epilog='Bad files are skipped and listed, with their reason, in '
    'OUTPUT/conversion_report.json (--strict makes any of them fatal).',
  )
  converters.add_arguments(p)
  p.set_defaults(func=converters.main, check_settings=_check_convert)


def _check_convert(args) -> None:
  from pipeline import flags
  from transform import data_format

  flags.check_values(
    args,
    at_least={'shards': 1},
    shares=('eval_fraction',),
    existing=('input',),
    writable=('output',),
  )
  data_format.check_label_settings(
    args.num_classes, args.ignore_label, names=('--num-classes', '--ignore-label')
  )


def _add_report(sub):
  from iouseg.report import command
  from pipeline import metadata

  p = sub.add_parser(
    'report',
    help="one HTML page reviewing the latest run's evaluation",
    description='Writes a self-contained HTML report of the latest run of a '
    'pipeline from ML Metadata and its TFMA output: verdict and failed rules, '
    'per-class IoU against the baseline, confusion matrix, slices, and the eval '
    'images with ground-truth and predicted masks, worst IoU first.',
  )
  command.add_arguments(p)
  metadata.add_password_file_argument(p)
  p.set_defaults(func=command.main, check_settings=_report_metadata)


def _report_metadata(args) -> None:
  """`iouseg report`'s --metadata with its password file, its server reachable (ValueError)."""
  from pipeline import flags, metadata

  flags.check_values(args, at_least={'max_images': 0}, existing=('metadata',), writable=('output',))
  args.metadata = metadata.with_password_file(args.metadata, args.metadata_password_file)
  metadata.check_server(args.metadata)
  if args.output is None and metadata.is_server(args.metadata):
    # No metadata file to write beside: the current folder.
    args.output = f'{args.pipeline_name}-report.html'


def _add_kubeflow(sub):
  from kubeflow import compile as kubeflow_compile
  from kubeflow import submit as kubeflow_submit

  for name, module, add_arguments, func, help_text in (
    (
      'compile-kubeflow',
      kubeflow_compile,
      kubeflow_compile.add_compile_arguments,
      kubeflow_compile.compile_main,
      'compile the pipeline for Kubeflow Pipelines (KFP v2 YAML)',
    ),
    (
      'submit-kubeflow',
      kubeflow_submit,
      kubeflow_submit.add_submit_arguments,
      kubeflow_submit.submit_main,
      'upload a compiled pipeline to a KFP cluster and start a run',
    ),
  ):
    p = sub.add_parser(
      name,
      help=help_text,
      description=module.__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=func)
  # compile-kubeflow's settings are checked before anything is compiled (see `main`).
  sub.choices['compile-kubeflow'].set_defaults(check_settings=_check_compile)
  sub.choices['submit-kubeflow'].set_defaults(check_settings=_check_submit)


def _check_compile(args) -> None:
  """The pipeline's settings (`kubeflow.compile.check_settings`), then the resources (0 leaves one
  unset) and the output file."""
  from kubeflow import compile as kubeflow_compile
  from pipeline import flags

  kubeflow_compile.check_settings(args)
  resources = ('gpu_count', 'trainer_cpu', 'trainer_memory_gb', 'transform_cpu')
  resources += ('transform_memory_gb', 'evaluator_cpu', 'evaluator_memory_gb')
  flags.check_values(args, at_least=dict.fromkeys(resources, 0), writable=('output',))
  if not args.output.endswith(('.yaml', '.yml')):
    raise ValueError(f'--output {args.output}: the pipeline file must be YAML (.yaml or .yml)')


def _check_submit(args) -> None:
  """The pipeline file, the steps and threshold, and each --param against the file's parameters,
  before anything reaches the cluster."""
  import yaml

  from kubeflow import parameters
  from pipeline import flags

  flags.check_values(
    args, at_least={'train_steps': 1}, shares=('min_mean_iou',), existing=('pipeline_file',)
  )
  try:
    parameters.declared_parameters(args.pipeline_file)
  except (yaml.YAMLError, KeyError, TypeError, AttributeError, IsADirectoryError):
    raise ValueError(
      f'--pipeline-file {args.pipeline_file}: not a pipeline spec; write one with iouseg '
      'compile-kubeflow'
    ) from None
  try:
    parameters.submission_arguments(args.pipeline_file, args.param)
  except ValueError as e:
    raise ValueError(f'--param {e}') from None


def build_parser() -> argparse.ArgumentParser:
  """Every subcommand's parser. Imports neither TensorFlow nor TFX (tests/test_kubeflow.py checks
  it), so nothing logs while the command line is parsed, before a command holds stderr."""
  parser = _OneLineErrors(prog='iouseg', description=__doc__)
  sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
  _add_demo_data(sub)
  _add_convert(sub)
  _add_run(sub)
  _add_predict(sub)
  _add_report(sub)
  _add_export(sub)
  _add_kubeflow(sub)
  return parser


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  check = getattr(args, 'check_settings', None)
  if check is not None:
    try:
      check(args)
    except ValueError as e:
      return _settings_refused(f'iouseg {args.command}', e)
  return args.func(args)


if __name__ == '__main__':
  sys.exit(main())
