"""`iouseg submit-kubeflow`: uploads a compiled pipeline file to Kubeflow Pipelines and starts a
run.

  iouseg submit-kubeflow --host https://kfp.example.com/pipeline \\
      --pipeline-file runs/kubeflow/iouseg_pipeline.yaml \\
      --param data_root=gs://bucket/data --train-steps 2000 --min-mean-iou 0.6

A thin wrapper of `kfp.Client(host=...).create_run_from_pipeline_package(...)` for a host it can
reach as is; for sign-in (IAP client id, Dex cookies, tokens) call `kfp.Client` with those
arguments and the same pipeline file yourself. The run's parameters are the
compiled spec's runtime parameters (`data_root`, `train_args`, `eval_config`, see
`iouseg compile-kubeflow --help`); those not given keep their compiled defaults.
"""

import argparse

from kubeflow import parameters


def add_submit_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument('--host', required=True, help='KFP API endpoint, e.g. http://localhost:8080')
  parser.add_argument(
    '--pipeline-file', required=True, help='a PipelineSpec YAML written by iouseg compile-kubeflow'
  )
  parser.add_argument('--experiment', default='iouseg', help='(default: %(default)s)')
  parser.add_argument('--run-name', help='(default: file name and time)')
  parser.add_argument('--namespace', help='Kubeflow profile namespace of a multi-user cluster')
  parser.add_argument('--pipeline-root', help='overrides the compiled pipeline root for this run')
  parser.add_argument(
    '--param',
    action='append',
    default=[],
    metavar='NAME=VALUE',
    help='runtime parameter, repeatable, e.g. --param data_root=gs://bucket/data',
  )
  parser.add_argument('--train-steps', type=int, help='sets train_args to {"num_steps": N}')
  parser.add_argument(
    '--min-mean-iou',
    type=float,
    help='sets the blessing threshold inside eval_config (the compiled one or '
    "--param eval_config's)",
  )


def submit_main(args: argparse.Namespace) -> int:
  import kfp  # kfp's client is slow to import

  arguments = parameters.submission_arguments(
    args.pipeline_file, args.param, args.train_steps, args.min_mean_iou
  )
  result = kfp.Client(host=args.host).create_run_from_pipeline_package(
    args.pipeline_file,
    arguments=arguments,
    run_name=args.run_name,
    experiment_name=args.experiment,
    namespace=args.namespace,
    pipeline_root=args.pipeline_root,
  )
  print(
    f'run {result.run_id} started in experiment {args.experiment!r} '
    f'with {sorted(arguments) or "the compiled defaults"}'
  )
  return 0
