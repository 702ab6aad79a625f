"""Kubernetes resources per component: the KFP v2 `ResourceSpec` TFX compiles into each task.

Set on the built pipeline's components, only when compiling for Kubeflow: LocalDagRunner rejects a
platform config it does not know, so `create_pipeline` itself stays free of them. kfp is imported
only to build the specs: the `iouseg` parser adds these flags and must start fast.
"""

import argparse


def add_resource_arguments(parser: argparse.ArgumentParser) -> None:
  group = parser.add_argument_group('Kubernetes resources (0 leaves a value unset)')
  group.add_argument(
    '--gpu-count', type=int, default=1, help='GPUs of the Trainer (default: %(default)s)'
  )
  group.add_argument(
    '--gpu-type',
    default='nvidia.com/gpu',
    help="the Trainer's accelerator: a Kubernetes resource name on open-source "
    'KFP, a type such as NVIDIA_TESLA_T4 on Vertex AI (default: %(default)s)',
  )
  group.add_argument(
    '--trainer-cpu', type=float, default=8, help='CPU limit of the Trainer (default: %(default)s)'
  )
  group.add_argument(
    '--trainer-memory-gb',
    type=float,
    default=32,
    help='memory limit in GB of the Trainer (default: %(default)s)',
  )
  for component in ('transform', 'evaluator'):
    group.add_argument(
      f'--{component}-cpu',
      type=float,
      default=2,
      help=f'CPU request of {component.capitalize()} (default: %(default)s)',
    )
    group.add_argument(
      f'--{component}-memory-gb',
      type=float,
      default=8,
      help=f'memory request in GB of {component.capitalize()} (default: %(default)s)',
    )


def resource_specs(args: argparse.Namespace) -> dict:
  """Component id -> ResourceSpec: limits and GPUs for the Trainer (and the Tuner, which trains a
  model per trial, when `--tune-trials` adds it), requests for the Beam-heavy Transform and
  Evaluator (they scale with data, so a floor, not a cap)."""
  from kfp.pipeline_spec import pipeline_spec_pb2

  resource_spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec
  trainer = resource_spec(cpu_limit=args.trainer_cpu, memory_limit=args.trainer_memory_gb)
  if args.gpu_count:
    trainer.accelerator.CopyFrom(
      resource_spec.AcceleratorConfig(type=args.gpu_type, count=args.gpu_count)
    )
  specs = {
    'Trainer': trainer,
    'Transform': resource_spec(
      cpu_request=args.transform_cpu, memory_request=args.transform_memory_gb
    ),
    'Evaluator': resource_spec(
      cpu_request=args.evaluator_cpu, memory_request=args.evaluator_memory_gb
    ),
  }
  if getattr(args, 'tune_trials', 0) > 0:
    specs['Tuner'] = resource_spec()
    specs['Tuner'].CopyFrom(trainer)
  return specs


def attach(pipeline, specs: dict) -> None:
  """Sets each ResourceSpec as the platform config of the component with that id."""
  components = {component.id: component for component in pipeline.components}
  for component_id, spec in specs.items():
    components[component_id].with_platform_config(spec)
