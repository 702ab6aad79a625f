"""Command-line flags of `create_pipeline`, shared by every runner (`iouseg run`,
`compile-kubeflow`), and the settings objects built from them (`create_pipeline_kwargs`).

Model settings get one flag per setting of `TrainerConfig` (`--image-size`, `--loss`, ...), named
by its flat name and with its default, help and choices, so the flags cannot drift from the
settings the pipeline reads; each group of the settings tree (data, model, augmentation, loss,
optimiser, runtime) is one group of flags.
"""

import argparse
import dataclasses
import glob
import os
import re

from pipeline import beam_runners, settings
from trainer import config as trainer_config
from transform.config import LazyChoices

# Title of each settings group's flags in --help.
_GROUP_TITLES = {
  'data': 'data settings',
  'model': 'model settings',
  'augmentation': 'augmentation settings (train split only)',
  'losses': 'loss settings',
  'optimizer': 'optimiser settings',
  'runtime': 'runtime settings',
}


def _config_fields():
  """(group name, its fields) for each group of TrainerConfig, in order."""
  return [(group, dataclasses.fields(settings)) for group, settings in trainer_config.GROUPS]


def add_config_arguments(parser: argparse.ArgumentParser, groups: dict | None = None) -> None:
  """One flag per TrainerConfig setting, with the field's own help, default and choices, in one
  argument group per settings group: the one of that name in `groups` (a runner's flags of the
  same concern share it), else a new one. A bool that defaults to True is a --NAME/--no-NAME pair,
  one that defaults to False a plain switch."""
  groups = {} if groups is None else groups
  for group_name, fields in _config_fields():
    group = groups.get(group_name) or parser.add_argument_group(
      _GROUP_TITLES.get(group_name, group_name)
    )
    for field in fields:
      flag = flag_name(field.name)
      help_text = field.metadata['help']
      if field.default is True:
        # argparse adds '(default: True)' to the help of this action itself.
        group.add_argument(
          flag, action=argparse.BooleanOptionalAction, default=True, help=help_text
        )
      elif field.default is False:
        group.add_argument(flag, action='store_true', help=help_text)
      else:
        choices, metavar = field.metadata.get('choices'), None
        if isinstance(choices, LazyChoices):
          # Checked with the settings (`check_args`), not by argparse: reading them loads their
          # module (TensorFlow for the losses), which logs before a command holds stderr.
          choices, metavar = None, field.name.upper()
        group.add_argument(
          flag,
          type=type(field.default),
          default=field.default,
          choices=choices,
          metavar=metavar,
          # An empty default is said by the help itself.
          help=f'{help_text} (default: %(default)s)' if field.default != '' else help_text,
        )


def add_pipeline_arguments(
  parser: argparse.ArgumentParser,
  path_defaults: dict | None = None,
  baseline: settings.Baseline = settings.Baseline.RESOLVER,
) -> dict:
  """Every `create_pipeline` setting a user sets, in argument groups by concern: paths, data,
  model, loss, optimiser, augmentation, evaluation and blessing, runtime. `path_defaults` gives
  defaults for data_root, pipeline_root and serving_dir; without it the three are required.
  `baseline` is the default of --baseline, the runner's. Returns the groups by name ('paths',
  'data', 'model', 'losses', 'optimizer', 'augmentation', 'evaluation', 'runtime'), for the
  runner's own flags."""
  groups = {'paths': parser.add_argument_group('paths')}
  for name in ('data', 'model', 'losses', 'optimizer', 'augmentation'):
    groups[name] = parser.add_argument_group(_GROUP_TITLES[name])
  groups['evaluation'] = parser.add_argument_group('evaluation and blessing settings')
  groups['runtime'] = parser.add_argument_group(_GROUP_TITLES['runtime'])
  add_config_arguments(parser, groups)  # each group's settings first, then the runner's flags

  given = path_defaults or {}
  for name, help_text in (
    ('data_root', 'TFRecords; train/ and eval/ subfolders are the splits'),
    ('pipeline_root', 'where component outputs are written'),
    ('serving_dir', 'blessed models are pushed here as numbered versions'),
  ):
    default = given.get(name)
    groups['paths'].add_argument(
      flag_name(name),
      required=default is None,
      default=default,
      help=help_text + (' (default: %(default)s)' if default else ''),
    )
  groups['paths'].add_argument(
    '--pipeline-name',
    default='iouseg',
    help='name in ML Metadata; runs of one name share history and cache (default: %(default)s)',
  )

  data = groups['data']
  data.add_argument(
    '--max-bad-fraction',
    type=float,
    default=0.0,
    help='fail the run when a larger share of a split is bad records; they are '
    'quarantined either way (default: %(default)s)',
  )
  data.add_argument(
    '--infer-data',
    metavar='DIR',
    help='also segment the unlabelled TFRecords (image/encoded, optionally '
    'image/filename) directly in DIR with the blessed model: one class-id PNG per '
    'record and index.csv in the MaskWriter artifact (docs/batch_inference.md)',
  )

  groups['model'].add_argument(
    '--warm-start',
    action='store_true',
    help='start the Trainer from the weights of the latest blessed model (same num_classes, '
    'channels, base_filters and depth needed); from scratch until a model is blessed '
    '(docs/training.md#continuous-training)',
  )

  optimizer = groups['optimizer']
  optimizer.add_argument(
    '--train-steps',
    type=int,
    default=400,
    help='optimisation steps of the Trainer (default: %(default)s)',
  )
  optimizer.add_argument(
    '--tune-trials',
    type=int,
    default=0,
    metavar='N',
    help='run the Tuner (KerasTuner, N trials: learning rate, loss, width) '
    'before the Trainer, which trains with the best values; 0: no Tuner '
    '(docs/tuning.md) (default: %(default)s)',
  )
  optimizer.add_argument(
    '--tune-steps',
    type=int,
    metavar='STEPS',
    help='train steps of each Tuner trial (default: --train-steps)',
  )

  evaluation = groups['evaluation']
  evaluation.add_argument(
    '--eval-steps',
    type=int,
    default=3,
    help='validation steps after each epoch (default: %(default)s)',
  )
  evaluation.add_argument(
    '--min-mean-iou',
    type=float,
    default=0.5,
    help='blessing threshold on eval mean IoU (default: %(default)s)',
  )
  evaluation.add_argument(
    '--baseline',
    type=_baseline,
    choices=list(settings.Baseline),
    default=baseline,
    help="what the candidate may not be worse than: 'resolver', the latest blessed model in ML "
    'Metadata (a Resolver task, which open-source Kubeflow Pipelines cannot run); '
    "'serving_dir', the newest version in --serving-dir, the model TF Serving serves; 'none', "
    'only the absolute rules bless (default: %(default)s)',
  )
  evaluation.add_argument(
    '--class-min-iou',
    type=_class_floors,
    default={},
    metavar='CLASS=IOU,...',
    help='per-class IoU floors on the eval split, e.g. background=0.9,disc=0.5',
  )
  evaluation.add_argument(
    '--max-class-drop',
    type=float,
    metavar='IOU',
    help='no class may lose more IoU than this against the baseline, e.g. 0.05',
  )
  evaluation.add_argument(
    '--slice-by',
    action='append',
    default=[],
    metavar='FEATURE[,FEATURE]',
    help='repeatable: report metrics per value of an example feature '
    '(features listed together are crossed), e.g. image/source; the '
    'mean-IoU rules apply to every slice',
  )
  evaluation.add_argument(
    '--class-presence-slices',
    action='store_true',
    help='also slice by whether each foreground class occurs in the ground '
    'truth (slices label_has_<class>=yes/no)',
  )

  runtime = groups['runtime']
  runtime.add_argument(
    '--beam-runner',
    default='in_memory',
    choices=beam_runners.LOCAL_RUNNERS,
    help='Beam runner of every Beam-based component (default: %(default)s)',
  )
  runtime.add_argument(
    '--beam-workers',
    type=int,
    default=2,
    help='processes of --beam-runner multi_processing (default: %(default)s)',
  )
  runtime.add_argument(
    '--beam-arg',
    action='append',
    default=[],
    metavar='ARG',
    help="extra Beam argument, repeatable; with a cluster runner's arguments "
    '(docs/scaling.md: Dataflow, Flink, Spark) it overrides --beam-runner',
  )
  runtime.add_argument('--no-cache', action='store_true', help='re-execute every component')
  return groups


def _baseline(text: str) -> settings.Baseline:
  try:
    return settings.Baseline(text)
  except ValueError as e:
    raise argparse.ArgumentTypeError(str(e)) from None


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


def configs_from_args(args: argparse.Namespace) -> trainer_config.TrainerConfig:
  """The TrainerConfig of the settings flags (its `data` is Transform's TransformConfig)."""
  values = vars(args)
  return trainer_config.TrainerConfig.from_flat(
    **{name: values[name] for name in trainer_config.GROUP_OF}
  )


def pipeline_beam_args(args: argparse.Namespace) -> list:
  """--beam-arg alone when it names a runner, else the local runner's arguments plus --beam-arg."""
  if any(arg.startswith('--runner=') for arg in args.beam_arg):
    return list(args.beam_arg)
  return beam_runners.beam_args(args.beam_runner, args.beam_workers) + list(args.beam_arg)


def flag_name(field: str) -> str:
  return '--' + field.replace('_', '-')


def _in_flag_names(message: str) -> str:
  """A config's error message, which names its fields, with each field name as its flag."""
  names = sorted(trainer_config.GROUP_OF, key=len, reverse=True)
  return re.sub(
    r'(?<![\w-])(' + '|'.join(names) + r')(?![\w-])', lambda m: flag_name(m.group(1)), message
  )


def _is_local(path: str) -> bool:
  # gs://, s3://, hdfs://...: read by the cluster's tasks, not checked here.
  return '://' not in path


def _check_data_root_exists(data_root: str) -> None:
  if _is_local(data_root) and not os.path.isdir(data_root):
    raise ValueError(
      f'--data-root {data_root}: no such folder; give the folder of the TFRecords '
      '(train/ and eval/ subfolders, or files to split 3:1 by hash)'
    )


def _nearest_existing(path: str) -> str:
  path = os.path.abspath(path)
  while not os.path.exists(path):
    path = os.path.dirname(path)
  return path


def check_values(args, *, at_least=None, shares=(), existing=(), writable=()) -> None:
  """ValueError naming the flag for the first bad value among these attributes of `args` (None, a
  flag not given, passes): a number below its minimum (`at_least`: {name: minimum}), a share
  outside 0..1 (NaN included), a local path that does not exist (`existing`), an output nothing
  can be written under (`writable`: it, or the nearest existing path above it, cannot be written
  by this user, a read-only mount say, or that path above is a file)."""
  for name, minimum in (at_least or {}).items():
    value = getattr(args, name)
    if value is not None and not value >= minimum:
      raise ValueError(f'{flag_name(name)} must be at least {minimum}, got {value}')
  for name in shares:
    value = getattr(args, name)
    if value is not None and not 0 <= value <= 1:
      raise ValueError(f'{flag_name(name)} must be from 0 to 1, got {value}')
  for name in existing:
    path = getattr(args, name)
    if path is not None and _is_local(str(path)) and not os.path.exists(path):
      raise ValueError(f'{flag_name(name)} {path}: no such file or folder')
  for name in writable:
    path = getattr(args, name)
    if path is None or not _is_local(str(path)):
      continue
    above = _nearest_existing(str(path))
    if above != os.path.abspath(path) and not os.path.isdir(above):
      raise ValueError(f'{flag_name(name)} {path}: cannot write there ({above} is a file)')
    if not os.access(above, os.W_OK):
      raise ValueError(f'{flag_name(name)} {path}: cannot write there ({above} is read-only)')


def check_data_root(data_root: str, split_patterns: dict[str, str] | None) -> None:
  """ValueError unless a local `data_root` holds records as the pipeline will read them: files
  matching each split's pattern, or for the hash split (`split_patterns` None) files directly in it.
  Bucket URIs are not checked."""
  if not _is_local(data_root):
    return
  _check_data_root_exists(data_root)
  if split_patterns:
    for split, pattern in split_patterns.items():
      if not any(os.path.isfile(p) for p in glob.glob(os.path.join(data_root, pattern))):
        raise ValueError(
          f'--data-root {data_root}: no files match {pattern}, the {split} split; '
          'put its TFRecords there'
        )
  elif not any(os.path.isfile(os.path.join(data_root, name)) for name in os.listdir(data_root)):
    raise ValueError(
      f'--data-root {data_root}: no files directly in it to split by hash; put the '
      'TFRecords there, or in train/ and eval/ subfolders (both)'
    )


def check_args(args: argparse.Namespace) -> None:
  """ValueError, one line naming the flag and the fix, for any setting of `add_pipeline_arguments`
  the run would fail on later: the configs' own checks (their `__post_init__`), steps, class names
  and blessing flags, and that a local data root exists. Imports neither TFX nor Beam, so a command
  calls it before any component runs; what the data root holds is `check_data_root`'s."""
  try:
    names = configs_from_args(args).data.names
  except ValueError as e:
    raise ValueError(_in_flag_names(str(e))) from None
  for name in ('train_steps', 'eval_steps', 'beam_workers'):
    if getattr(args, name) < 1:
      raise ValueError(f'{flag_name(name)} must be at least 1, got {getattr(args, name)}')
  if not 0 <= args.max_bad_fraction <= 1:
    raise ValueError(f'--max-bad-fraction is a share of records, 0..1, got {args.max_bad_fraction}')
  if args.tune_trials < 0 or (args.tune_steps is not None and args.tune_steps < 1):
    raise ValueError(
      '--tune-trials must be >= 0 (0: no Tuner) and --tune-steps at least 1, got '
      f'{args.tune_trials} and {args.tune_steps}'
    )
  infer = args.infer_data
  if (
    infer
    and _is_local(infer)
    and not (
      os.path.isdir(infer)
      and any(os.path.isfile(os.path.join(infer, name)) for name in os.listdir(infer))
    )
  ):
    raise ValueError(
      f'--infer-data {infer}: no files directly in it; give the folder of the unlabelled TFRecords'
    )
  unknown = sorted(set(args.class_min_iou) - set(names))
  if unknown:
    raise ValueError(
      f'--class-min-iou names unknown classes {", ".join(unknown)}; the classes are '
      f'{", ".join(names)}'
    )
  _check_blessing_and_names(args, names)
  _check_data_root_exists(args.data_root)
  _check_encoder_weights(args.encoder_weights)


def _check_encoder_weights(path: str) -> None:
  """A local --encoder-weights file exists and is a whole, readable Keras .h5 weights file (whether
  its layers fit the encoder is the Trainer's check, which builds it); a URI is the Trainer's."""
  if not path or not _is_local(path):
    return
  from trainer import weights_file  # h5py, no TensorFlow

  try:
    weights_file.read(path)
  except weights_file.EncoderWeightsError as e:  # its setting's name as the flag (not in the path)
    raise ValueError(
      flag_name('encoder_weights') + str(e).removeprefix('encoder_weights')
    ) from None


def _check_blessing_and_names(args: argparse.Namespace, names) -> None:
  """The blessing thresholds are IoUs (0..1), each --slice-by names a feature, the class names are
  distinct and not empty (the report and the per-class metrics are keyed by them) and so is the
  pipeline name (ML Metadata's contexts are named by it)."""
  check_values(args, shares=('min_mean_iou', 'max_class_drop'))
  for name, floor in args.class_min_iou.items():
    if not 0 <= floor <= 1:
      raise ValueError(f'--class-min-iou {name}={floor}: an IoU floor is from 0 to 1')
  for spec in args.slice_by:
    if not any(f.strip() for f in spec.split(',')):
      raise ValueError(f'--slice-by {spec!r}: expected FEATURE[,FEATURE], e.g. image/source')
  if len(set(names)) != len(names) or not all(n.strip() for n in names):
    raise ValueError(f'--class-names {",".join(names)}: the names must be distinct and not empty')
  if not args.pipeline_name.strip():
    raise ValueError('--pipeline-name must not be empty')


def create_pipeline_kwargs(args: argparse.Namespace, split_patterns: dict[str, str] | None) -> dict:
  """`create_pipeline` arguments from the flags of `add_pipeline_arguments`, by keyword: the
  settings objects of `pipeline.settings`, the Beam arguments and the cache switch. Every runner
  builds its pipeline from these; `split_patterns` is the runner's reading of the data layout
  (`DataSettings.split_patterns`)."""
  from tfx.proto import trainer_pb2  # only when a pipeline is built: the parser stays TFX-free

  from pipeline.eval_config import EvalOptions

  return dict(
    paths=settings.PipelinePaths(
      pipeline_name=args.pipeline_name,
      pipeline_root=args.pipeline_root,
      data_root=args.data_root,
      serving_model_dir=args.serving_dir,
    ),
    data=settings.DataSettings(
      split_patterns=split_patterns, max_bad_fraction=args.max_bad_fraction
    ),
    training=settings.TrainingSettings(
      trainer_config=configs_from_args(args),
      train_args=trainer_pb2.TrainArgs(num_steps=args.train_steps),
      eval_args=trainer_pb2.EvalArgs(num_steps=args.eval_steps),
      warm_start=args.warm_start,
    ),
    blessing=settings.BlessingSettings(
      min_mean_iou=args.min_mean_iou,
      eval_options=EvalOptions(
        class_min_iou=args.class_min_iou,
        max_class_drop=args.max_class_drop,
        slice_features=[
          tuple(f.strip() for f in spec.split(',') if f.strip()) for spec in args.slice_by
        ],
        class_presence_slices=args.class_presence_slices,
      ),
      baseline=args.baseline,
    ),
    extras=settings.OptionalComponents(
      tune_trials=args.tune_trials, tune_steps=args.tune_steps, infer_data_root=args.infer_data
    ),
    beam_pipeline_args=pipeline_beam_args(args),
    enable_cache=not args.no_cache,
  )
