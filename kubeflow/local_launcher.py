"""Runs a compiled KFP v2 pipeline spec on this machine, task by task, as the KFP v2 backend would.

For checking a spec without a cluster. Each container task runs as a subprocess, in dependency
order, through the command and arguments the spec gives, with `{{$}}` replaced by an ExecutorInput
built the way the backend builds it: parameters from the task's constants and the run's parameter
values, input artifacts from the upstream tasks' output artifacts (as their executors reported
them), output artifacts and the executor output file under the pipeline root. A container's
pre-cache-check hook (TFX's ExampleGen driver) runs before it, as on Vertex AI. The placeholder
substitution is kfp's own (the helpers of `kfp.local`, whose runner only takes single components
without input artifacts).

Not a backend: no caching and no ML Metadata. A resolver task (the `--baseline resolver` or
`--warm-start` spec's) is an MLMD query over earlier runs that only the backend can answer, so it
resolves to no artifacts, as on the first run of a fresh cluster. Importer tasks are refused (this
project's specs have none).

  python -m kubeflow.local_launcher PIPELINE.yaml --pipeline-root DIR [--param NAME=VALUE ...]
"""

import argparse
import datetime
import graphlib
import json
import os
import subprocess
import sys

from google.protobuf import json_format
from kfp import components
from kfp.compiler import pipeline_spec_builder
from kfp.local import executor_input_utils, placeholder_utils
from kfp.pipeline_spec import pipeline_spec_pb2 as pb

from kubeflow import parameters as parameters_lib

# Task name -> output key -> the artifacts the task produced.
Outputs = dict[str, dict[str, pb.ArtifactList]]


def load_spec(pipeline_file: str) -> pb.PipelineSpec:
  """Parsed by kfp's own loader, as `kfp.Client` and the UI would."""
  return components.load_component_from_file(pipeline_file).pipeline_spec


def deployment_config(spec: pb.PipelineSpec) -> pb.PipelineDeploymentConfig:
  """The executors (containers, resolvers...), which the spec stores as an untyped Struct."""
  return json_format.ParseDict(
    json_format.MessageToDict(spec.deployment_spec), pb.PipelineDeploymentConfig()
  )


def task_order(spec: pb.PipelineSpec) -> list[str]:
  tasks = spec.root.dag.tasks
  graph = {
    name: set(tasks[name].dependent_tasks)
    | {a.task_output_artifact.producer_task for a in tasks[name].inputs.artifacts.values()}
    for name in sorted(tasks)
  }
  return list(graphlib.TopologicalSorter(graph).static_order())


def parameter_values(spec: pb.PipelineSpec, arguments: dict[str, object]):
  """The run's parameters: the arguments given, else the compiled defaults."""
  declared = spec.root.input_definitions.parameters
  unknown = set(arguments) - set(declared)
  if unknown:
    raise ValueError(f'unknown parameters {sorted(unknown)}; the spec declares {sorted(declared)}')
  values = {}
  for name, parameter in declared.items():
    if name in arguments:
      values[name] = pipeline_spec_builder.to_protobuf_value(arguments[name])
    elif parameter.HasField('default_value'):
      values[name] = parameter.default_value
    elif not parameter.is_optional:
      raise ValueError(f'parameter {name!r} has no default: give it a value')
  return values


def executor_input(
  task: pb.PipelineTaskSpec,
  component: pb.ComponentSpec,
  run_parameters,
  outputs: Outputs,
  task_root: str,
  run_id: str,
) -> pb.ExecutorInput:
  result = pb.ExecutorInput()
  for name, source in task.inputs.parameters.items():
    kind = source.WhichOneof('kind')
    if kind == 'runtime_value':
      result.inputs.parameter_values[name].CopyFrom(source.runtime_value.constant)
    elif kind == 'component_input_parameter':
      result.inputs.parameter_values[name].CopyFrom(
        run_parameters[source.component_input_parameter]
      )
    else:
      raise NotImplementedError(f'{task.task_info.name}: parameter {name} from {kind}')
  for name, source in task.inputs.artifacts.items():
    if source.WhichOneof('kind') != 'task_output_artifact':
      raise NotImplementedError(f'{task.task_info.name}: artifact {name} from {source}')
    producer = source.task_output_artifact
    result.inputs.artifacts[name].CopyFrom(
      outputs[producer.producer_task][producer.output_artifact_key]
    )
  for key, definition in component.output_definitions.artifacts.items():
    # A unique name, like the backend's MLMD artifact names: TFX maps artifact ids through them.
    result.outputs.artifacts[key].artifacts.add(
      name=f'{run_id}/{task.task_info.name}/{key}',
      type=definition.artifact_type,
      uri=os.path.join(task_root, key),
    )
  result.outputs.output_file = os.path.join(task_root, 'executor_output.json')
  return result


def _run(
  task_name: str,
  command,
  args,
  executor_input_dict: dict,
  run_id: str,
  pipeline_root: str,
  task_root: str,
  python: str,
) -> None:
  full_command = placeholder_utils.replace_placeholders(
    full_command=list(command) + list(args),
    executor_input_dict=executor_input_dict,
    pipeline_resource_name=run_id,
    task_resource_name=task_name,
    pipeline_root=pipeline_root,
  )
  if full_command[0] == 'python':  # The image's interpreter; here, the one with the project.
    full_command[0] = python
  print(f'[local_launcher] {task_name}: {" ".join(full_command[:4])} ...', flush=True)
  returncode = subprocess.run(full_command, cwd=task_root, check=False).returncode
  if returncode:
    raise RuntimeError(f'task {task_name} failed with exit code {returncode}')


def reported_outputs(task_input: pb.ExecutorInput) -> dict[str, pb.ArtifactList]:
  """The task's output artifacts updated with what its executor reported (uri, metadata such as
  `blessed`), as the backend records them for downstream tasks."""
  reported = pb.ExecutorOutput()
  if os.path.exists(task_input.outputs.output_file):
    with open(task_input.outputs.output_file, encoding='utf-8') as f:
      json_format.Parse(f.read(), reported, ignore_unknown_fields=True)
  result = {}
  for key, artifacts in task_input.outputs.artifacts.items():
    result[key] = pb.ArtifactList()
    result[key].CopyFrom(artifacts)
    if reported.artifacts[key].artifacts:
      result[key].artifacts[0].MergeFrom(reported.artifacts[key].artifacts[0])
  return result


def run_pipeline_spec(
  pipeline_file: str,
  pipeline_root: str,
  arguments: dict[str, object] | None = None,
  python: str = sys.executable,
) -> Outputs:
  """Runs every task of the spec; returns each task's output artifacts."""
  spec = load_spec(pipeline_file)
  deployment = deployment_config(spec)
  run_parameters = parameter_values(spec, arguments or {})
  run_id = f'{spec.pipeline_info.name}-{datetime.datetime.now():%Y%m%d-%H%M%S-%f}'
  outputs: Outputs = {}
  for name in task_order(spec):
    task = spec.root.dag.tasks[name]
    component = spec.components[task.component_ref.name]
    executor = deployment.executors[component.executor_label]
    kind = executor.WhichOneof('spec')
    if kind == 'resolver':
      print(f'[local_launcher] {name}: resolver, no earlier runs -> no artifacts', flush=True)
      outputs[name] = {key: pb.ArtifactList() for key in component.output_definitions.artifacts}
      continue
    if kind != 'container':
      raise NotImplementedError(f'task {name}: {kind} executors are not supported locally')
    task_root = os.path.join(pipeline_root, run_id, name)
    os.makedirs(task_root)
    task_input = executor_input(task, component, run_parameters, outputs, task_root, run_id)
    # Integer parameters as JSON integers, as the backend writes them (kfp's own conversion).
    input_dict = executor_input_utils.executor_input_to_dict(task_input, component)
    container = executor.container
    hooks = (
      [container.lifecycle.pre_cache_check]
      if container.lifecycle.HasField('pre_cache_check')
      else []
    )
    for step in hooks + [container]:
      _run(name, step.command, step.args, input_dict, run_id, pipeline_root, task_root, python)
    outputs[name] = reported_outputs(task_input)
  return outputs


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
    prog='python -m kubeflow.local_launcher',
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument('pipeline_file')
  parser.add_argument('--pipeline-root', required=True, help='local folder for the task outputs')
  parser.add_argument('--param', action='append', default=[], metavar='NAME=VALUE')
  parser.add_argument('--train-steps', type=int, help='sets train_args')
  parser.add_argument('--min-mean-iou', type=float, help='sets the threshold in eval_config')
  args = parser.parse_args(argv)
  outputs = run_pipeline_spec(
    args.pipeline_file,
    os.path.abspath(args.pipeline_root),
    parameters_lib.submission_arguments(
      args.pipeline_file, args.param, args.train_steps, args.min_mean_iou
    ),
  )
  for task, artifacts in outputs.items():
    for key, artifact_list in artifacts.items():
      for artifact in artifact_list.artifacts:
        metadata = json.dumps(json_format.MessageToDict(artifact.metadata))
        print(f'{task}.{key}: {artifact.uri} {metadata}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
