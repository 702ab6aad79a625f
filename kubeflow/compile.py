"""`iouseg compile-kubeflow`: the pipeline of `pipeline.create_pipeline`, compiled for Kubeflow.

Compiles with TFX's `KubeflowV2DagRunner` to a KFP v2 PipelineSpec in YAML, the file
`kfp.Client().create_run_from_pipeline_package` uploads (kfp 2.5 cannot load TFX's other output,
the PipelineJob JSON wrapper). Every task runs the image given by `--image` (see
kubeflow/Dockerfile).

Set at submission (runtime parameters; defaults from the flags below):
  data_root    folder of TFRecords with train/ and eval/ (or any files with --hash-split)
  train_args   TrainArgs JSON, e.g. {"num_steps": 2000}
  eval_config  the Evaluator's whole TFMA EvalConfig JSON, holding the mean IoU blessing threshold
  infer_data_root  (only with --infer-data) folder of unlabelled TFRecords to segment
TFX replaces an exec property at run time only as a whole, never a field inside a proto, so the
step count and the threshold travel inside their protos; `iouseg submit-kubeflow --train-steps N
--min-mean-iou X` writes those two for you.

The Evaluator's baseline is the served model (`--baseline serving_dir`, the default): open-source
KFP rejects a run holding a Resolver task ("resolver executors not implemented"), so
`--baseline resolver`, and `--warm-start` which needs it, are for backends that run one (Vertex AI
Pipelines).

Offline: components are referenced by import path (no module_file), so compiling builds and uploads
nothing, and the image must contain this project.

TFX and the pipeline are imported only to compile: the `iouseg` parser adds these flags and must
start fast.
"""

import argparse
import os

import yaml

from kubeflow import resources
from pipeline import flags, settings

# On Kubeflow each task records to KFP's own ML Metadata store (the cluster's MySQL), which the
# backend configures: nothing of a local store, least of all a password, belongs in the spec.
_RUN_ONLY_FLAGS = ('--metadata', '--metadata-password-file')


def add_compile_arguments(parser: argparse.ArgumentParser) -> None:
  # Open-source KFP cannot run the Resolver: the served model is the baseline unless told.
  groups = flags.add_pipeline_arguments(parser, baseline=settings.Baseline.SERVING_DIR)
  groups['paths'].add_argument(
    '--image',
    required=True,
    help='container image of every task, built from kubeflow/Dockerfile and pushed where the '
    'cluster can pull it, e.g. ghcr.io/me/iouseg:0.1.0',
  )
  groups['paths'].add_argument(
    '--output',
    default='runs/kubeflow/iouseg_pipeline.yaml',
    help='PipelineSpec YAML to write (default: %(default)s)',
  )
  groups['data'].add_argument(
    '--hash-split',
    action='store_true',
    help='data without train/ and eval/ folders: split all files 3:1 by hash',
  )
  resources.add_resource_arguments(parser)
  # `iouseg run`'s metadata flags, accepted only to be refused in one line (`check_settings`).
  for flag in _RUN_ONLY_FLAGS:
    parser.add_argument(flag, help=argparse.SUPPRESS)


def _split_patterns(args: argparse.Namespace) -> dict[str, str] | None:
  return None if args.hash_split else settings.SPLIT_PATTERNS


def check_settings(args: argparse.Namespace) -> None:
  """ValueError, one line naming the flag, for a setting the compiled pipeline would fail on: the
  checks of `iouseg run` (a bucket data root is not looked at; the tasks read it) and --warm-start,
  which starts from the latest blessed model that only the Resolver finds."""
  flags.check_args(args)
  for flag in _RUN_ONLY_FLAGS:
    if getattr(args, flag[2:].replace('-', '_')) is not None:
      raise ValueError(
        f"{flag} is not for Kubeflow: its tasks record to KFP's own ML Metadata store, which the "
        'cluster configures (docs/metadata.md#on-kubeflow)'
      )
  if args.warm_start and args.baseline != settings.Baseline.RESOLVER:
    raise ValueError(
      '--warm-start needs --baseline resolver: the Trainer starts from the latest '
      'blessed model, which only the Resolver finds, and open-source KFP cannot run '
      'it (Vertex AI Pipelines can)'
    )
  flags.check_data_root(args.data_root, _split_patterns(args))


def build_pipeline(args: argparse.Namespace):
  """`create_pipeline` with runtime parameters, plus the Kubernetes resources of the flags."""
  from pipeline import pipeline as pipeline_lib  # imports TFX: only to compile

  pipeline = pipeline_lib.create_pipeline(
    **flags.create_pipeline_kwargs(args, _split_patterns(args)), runtime_parameters=True
  )
  resources.attach(pipeline, resources.resource_specs(args))
  return pipeline


def compile_spec(pipeline, image: str) -> dict:
  """The PipelineSpec of the TFX `pipeline` as a dict, with the pipeline root and the defaults."""
  from tfx import v1 as tfx

  # Schema 2.1 makes the TFX entrypoint read `inputs.parameterValues`, the field KFP v2 fills; with
  # 2.0 it reads the deprecated `inputs.parameters`, which the open-source backend leaves empty.
  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
    config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
      default_image=image, use_pipeline_spec_2_1=True
    )
  )
  spec = runner.run(pipeline, write_out=False)['pipelineSpec']
  # TFX keeps these two in the PipelineJob's runtimeConfig, which the bare spec lacks; without them
  # every parameter would be required at submission. Put them where kfp's own compiler does.
  spec['defaultPipelineRoot'] = pipeline.pipeline_info.pipeline_root
  declared = spec['root']['inputDefinitions']['parameters']
  for component in pipeline.components:
    for value in component.exec_properties.values():
      if isinstance(value, tfx.dsl.experimental.RuntimeParameter):
        declared[value.name].update(defaultValue=value.default, isOptional=True)
  # The served-model baseline reads the serving directory, state outside the pipeline that KFP's
  # cache key (inputs and settings) cannot see: never cached, or a later run would get the first
  # run's answer. (LocalDagRunner keys its cache on the served version through the component's
  # driver, which KFP's backend does not run.)
  from components.served_baseline import ServedModelBaseline

  for component in pipeline.components:
    if isinstance(component, ServedModelBaseline):
      spec['root']['dag']['tasks'][component.id]['cachingOptions'] = {'enableCache': False}
  return spec


def write_spec(spec: dict, path: str) -> None:
  if not path.endswith(('.yaml', '.yml')):
    raise ValueError(f'{path}: the pipeline file must be YAML (.yaml or .yml)')
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    yaml.safe_dump(spec, f, sort_keys=True)


def compile_main(args: argparse.Namespace) -> int:
  check_settings(args)
  spec = compile_spec(build_pipeline(args), args.image)
  write_spec(spec, args.output)
  tasks = sorted(spec['root']['dag']['tasks'])
  print(f'{args.output}: {len(tasks)} tasks ({", ".join(tasks)}), image {args.image}')
  print('runtime parameters: ' + ', '.join(sorted(spec['root']['inputDefinitions']['parameters'])))
  return 0
