"""Command-line flags of `create_pipeline`, shared by every runner (`iouseg run`, `compile-kubeflow`).

Model settings get one flag per field of `TrainerConfig` (`--image-size`, `--loss`, ...) with its
default, so the flags cannot drift from the settings the pipeline reads; `TransformConfig` shares
image size, channels and classes with it and adds `--ignore-label`.
"""
import argparse
import dataclasses
import glob
import os
import re
from typing import Dict, Optional

from pipeline import beam_runners
from trainer.config import TrainerConfig
from transform.config import LazyChoices, TransformConfig


def _config_fields():
  """TrainerConfig's fields, then TransformConfig's own (the shared ones are the same settings)."""
  trainer_fields = dataclasses.fields(TrainerConfig)
  names = {f.name for f in trainer_fields}
  return list(trainer_fields) + [f for f in dataclasses.fields(TransformConfig) if f.name not in names]


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
  """One flag per config field, with the field's own help, default and choices."""
  group = parser.add_argument_group('model settings (TrainerConfig and TransformConfig fields)')
  for field in _config_fields():
    flag = '--' + field.name.replace('_', '-')
    help_text = field.metadata['help']
    if isinstance(field.default, bool):
      group.add_argument(flag, action='store_true', help=help_text)
    else:
      choices = field.metadata.get('choices')
      # A metavar keeps argparse from listing lazy choices (loading their module) while it builds.
      metavar = field.name.upper() if isinstance(choices, LazyChoices) else None
      group.add_argument(flag, type=type(field.default), default=field.default, choices=choices,
                         metavar=metavar, help=f'{help_text} (default: %(default)s)')


def add_pipeline_arguments(parser: argparse.ArgumentParser,
                           path_defaults: Optional[dict] = None) -> None:
  """Every `create_pipeline` argument a user sets. `path_defaults` gives defaults for
  data_root, pipeline_root and serving_dir; without it the three are required."""
  paths = path_defaults or {}
  for name, help_text in (
      ('data_root', 'TFRecords; train/ and eval/ subfolders are the splits'),
      ('pipeline_root', 'where component outputs are written'),
      ('serving_dir', 'blessed models are pushed here as numbered versions')):
    default = paths.get(name)
    parser.add_argument('--' + name.replace('_', '-'), required=default is None, default=default,
                        help=help_text + (' (default: %(default)s)' if default else ''))
  parser.add_argument('--pipeline-name', default='iouseg', help='(default: %(default)s)')
  parser.add_argument('--train-steps', type=int, default=400, help='(default: %(default)s)')
  parser.add_argument('--eval-steps', type=int, default=3,
                      help='validation steps after each epoch (default: %(default)s)')
  parser.add_argument('--min-mean-iou', type=float, default=0.5,
                      help='blessing threshold on eval mean IoU (default: %(default)s)')
  parser.add_argument('--class-names', help='comma-separated, background first (default: class_0,...)')
  evaluation = parser.add_argument_group('blessing rules and slices beyond --min-mean-iou')
  evaluation.add_argument('--class-min-iou', type=_class_floors, default={}, metavar='CLASS=IOU,...',
                          help='per-class IoU floors on the eval split, e.g. background=0.9,disc=0.5')
  evaluation.add_argument('--max-class-drop', type=float, metavar='IOU',
                          help='no class may lose more IoU than this against the latest blessed '
                          'model, e.g. 0.05')
  evaluation.add_argument('--slice-by', action='append', default=[], metavar='FEATURE[,FEATURE]',
                          help='repeatable: report metrics per value of an example feature (features '
                          'listed together are crossed), e.g. image/source; the mean-IoU rules '
                          'apply to every slice')
  evaluation.add_argument('--class-presence-slices', action='store_true',
                          help='also slice by whether each foreground class occurs in the ground '
                          'truth (slices label_has_<class>=yes/no)')
  parser.add_argument('--beam-runner', default='in_memory', choices=beam_runners.LOCAL_RUNNERS,
                      help='Beam runner of every Beam-based component (default: %(default)s)')
  parser.add_argument('--beam-workers', type=int, default=2,
                      help='processes of --beam-runner multi_processing (default: %(default)s)')
  parser.add_argument('--beam-arg', action='append', default=[], metavar='ARG',
                      help='extra Beam argument, repeatable; with a cluster runner\'s arguments '
                      '(docs/scaling.md: Dataflow, Flink, Spark) it overrides --beam-runner')
  parser.add_argument('--no-cache', action='store_true', help='re-execute every component')
  parser.add_argument('--max-bad-fraction', type=float, default=0.0,
                      help='fail the run when a larger share of a split is bad records; they are '
                      'quarantined either way (default: %(default)s)')
  parser.add_argument('--warm-start', action='store_true',
                      help='start the Trainer from the weights of the latest blessed model (same '
                      'num_classes, channels, base_filters and depth needed); from scratch until '
                      'a model is blessed (docs/training.md#continuous-training)')
  parser.add_argument('--infer-data', metavar='DIR',
                      help='also segment the unlabelled TFRecords (image/encoded, optionally '
                      'image/filename) directly in DIR with the blessed model: one class-id PNG per '
                      'record and index.csv in the MaskWriter artifact (docs/batch_inference.md)')
  parser.add_argument('--tune-trials', type=int, default=0, metavar='N',
                      help='run the Tuner (KerasTuner, N trials: learning rate, loss, width) before '
                      'the Trainer, which trains with the best values; 0: no Tuner '
                      '(docs/tuning.md) (default: %(default)s)')
  parser.add_argument('--tune-steps', type=int, metavar='STEPS',
                      help='train steps of each Tuner trial (default: --train-steps)')
  add_config_arguments(parser)


def _class_floors(text: str) -> dict:
  """'background=0.9,disc=0.5' -> {'background': 0.9, 'disc': 0.5}."""
  floors = {}
  for item in filter(None, text.split(',')):
    name, _, value = item.partition('=')
    try:
      if not name.strip():
        raise ValueError(item)
      floors[name.strip()] = float(value)
    except ValueError:
      raise argparse.ArgumentTypeError(f'{item!r}: expected CLASS=IOU, e.g. disc=0.5') from None
  return floors


def configs_from_args(args: argparse.Namespace):
  """(TransformConfig, TrainerConfig), each from the flags of its own fields."""
  values = vars(args)
  return tuple(config_class(**{f.name: values[f.name] for f in dataclasses.fields(config_class)})
               for config_class in (TransformConfig, TrainerConfig))


def pipeline_beam_args(args: argparse.Namespace) -> list:
  """--beam-arg alone when it names a runner, else the local runner's arguments plus --beam-arg."""
  if any(arg.startswith('--runner=') for arg in args.beam_arg):
    return list(args.beam_arg)
  return beam_runners.beam_args(args.beam_runner, args.beam_workers) + list(args.beam_arg)


def flag_name(field: str) -> str:
  return '--' + field.replace('_', '-')


def _in_flag_names(message: str) -> str:
  """A config's error message, which names its fields, with each field name as its flag."""
  names = sorted((f.name for f in _config_fields()), key=len, reverse=True)
  return re.sub(r'(?<![\w-])(' + '|'.join(names) + r')(?![\w-])',
                lambda m: flag_name(m.group(1)), message)


def _is_local(path: str) -> bool:
  return '://' not in path  # gs://, s3://, hdfs://...: read by the cluster's tasks, not checked here


def _check_data_root_exists(data_root: str) -> None:
  if _is_local(data_root) and not os.path.isdir(data_root):
    raise ValueError(f'--data-root {data_root}: no such folder; give the folder of the TFRecords '
                     '(train/ and eval/ subfolders, or files to split 3:1 by hash)')


def check_data_root(data_root: str, split_patterns: Optional[Dict[str, str]]) -> None:
  """ValueError unless a local `data_root` holds records as the pipeline will read them: files
  matching each split's pattern, or for the hash split (`split_patterns` None) files directly in it.
  Bucket URIs are not checked."""
  if not _is_local(data_root):
    return
  _check_data_root_exists(data_root)
  if split_patterns:
    for split, pattern in split_patterns.items():
      if not any(os.path.isfile(p) for p in glob.glob(os.path.join(data_root, pattern))):
        raise ValueError(f'--data-root {data_root}: no files match {pattern}, the {split} split; '
                         'put its TFRecords there')
  elif not any(os.path.isfile(os.path.join(data_root, name)) for name in os.listdir(data_root)):
    raise ValueError(f'--data-root {data_root}: no files directly in it to split by hash; put the '
                     'TFRecords there, or in train/ and eval/ subfolders (both)')


def check_args(args: argparse.Namespace) -> None:
  """ValueError, one line naming the flag and the fix, for any setting of `add_pipeline_arguments`
  the run would fail on later: the configs' own checks (their `__post_init__`), steps, class names
  and blessing flags, and that a local data root exists. Imports neither TFX nor Beam, so a command
  calls it before any component runs; what the data root holds is `check_data_root`'s."""
  # TrainerConfig takes a rate of 0 (a deliberately untrained candidate); a command line asking for
  # it is a mistake.
  if not args.learning_rate > 0:
    raise ValueError(f'--learning-rate must be > 0 (0 trains nothing), got {args.learning_rate}; '
                     'e.g. 3e-3')
  try:
    transform_config, _ = configs_from_args(args)
  except ValueError as e:
    raise ValueError(_in_flag_names(str(e))) from None
  for name in ('train_steps', 'eval_steps', 'beam_workers'):
    if getattr(args, name) < 1:
      raise ValueError(f'{flag_name(name)} must be at least 1, got {getattr(args, name)}')
  if not 0 <= args.max_bad_fraction <= 1:
    raise ValueError(f'--max-bad-fraction is a share of records, 0..1, got {args.max_bad_fraction}')
  if args.tune_trials < 0 or (args.tune_steps is not None and args.tune_steps < 1):
    raise ValueError('--tune-trials must be >= 0 (0: no Tuner) and --tune-steps at least 1, got '
                     f'{args.tune_trials} and {args.tune_steps}')
  infer = args.infer_data
  if infer and _is_local(infer) and not (os.path.isdir(infer) and any(
      os.path.isfile(os.path.join(infer, name)) for name in os.listdir(infer))):
    raise ValueError(f'--infer-data {infer}: no files directly in it; give the folder of the '
                     'unlabelled TFRecords')
  names = args.class_names.split(',') if args.class_names else [
      f'class_{k}' for k in range(transform_config.num_classes)]
  if len(names) != transform_config.num_classes:
    raise ValueError(f'--class-names gives {len(names)} names for --num-classes '
                     f'{transform_config.num_classes}: one per class, background first')
  unknown = sorted(set(args.class_min_iou) - set(names))
  if unknown:
    raise ValueError(f'--class-min-iou names unknown classes {", ".join(unknown)}; the classes are '
                     f'{", ".join(names)}')
  _check_data_root_exists(args.data_root)


def create_pipeline_kwargs(args: argparse.Namespace) -> dict:
  """`create_pipeline` keyword arguments from the flags of `add_pipeline_arguments`."""
  from pipeline.eval_config import EvalOptions  # pylint: disable=g-import-not-at-top
  transform_config, trainer_config = configs_from_args(args)
  return dict(
      pipeline_name=args.pipeline_name, pipeline_root=args.pipeline_root, data_root=args.data_root,
      serving_model_dir=args.serving_dir, transform_config=transform_config,
      trainer_config=trainer_config, train_steps=args.train_steps, eval_steps=args.eval_steps,
      min_mean_iou=args.min_mean_iou,
      class_names=args.class_names.split(',') if args.class_names else None,
      beam_pipeline_args=pipeline_beam_args(args), enable_cache=not args.no_cache,
      max_bad_fraction=args.max_bad_fraction, warm_start=args.warm_start,
      infer_data_root=args.infer_data, tune_trials=args.tune_trials, tune_steps=args.tune_steps,
      eval_options=EvalOptions(
          class_min_iou=args.class_min_iou, max_class_drop=args.max_class_drop,
          slice_features=[tuple(f.strip() for f in spec.split(',') if f.strip())
                          for spec in args.slice_by],
          class_presence_slices=args.class_presence_slices))
