"""`iouseg compile-kubeflow` / `submit-kubeflow`: the compiled KFP v2 spec, read back with kfp's own
loader, and run task by task on this machine through the spec's own commands (kubeflow.local_launcher).
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import types

import pytest
from google.protobuf import json_format

from kubeflow import compile as compile_lib
from kubeflow import local_launcher, parameters, submit

from helpers import MODEL_CARD_SOURCES, PIPELINE_COMPONENTS, tiny_model_flags

IMAGE = 'ghcr.io/example/iouseg:test'
RUN_EXECUTOR = ['python', '-m', 'tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor']
COMPONENTS = set(PIPELINE_COMPONENTS)
RESOLVER_TASKS = {
  'latest_blessed_model_resolver-model-blessing-resolver',
  'latest_blessed_model_resolver-model-resolver',
}
# A small model and a cluster-style layout: every path is a bucket, none of this machine.
TINY = [
  '--image',
  IMAGE,
  '--pipeline-root',
  'gs://bucket/root',
  '--data-root',
  'gs://bucket/data',
  '--serving-dir',
  'gs://bucket/serving',
  *tiny_model_flags(epochs=1, batch_size=4),
  '--eval-steps',
  '1',
  '--train-steps',
  '600',
  '--gpu-count',
  '2',
  '--trainer-cpu',
  '4',
  '--trainer-memory-gb',
  '16',
  '--transform-cpu',
  '3',
  '--transform-memory-gb',
  '6',
]


def compile_file(path: pathlib.Path, *flags: str) -> pathlib.Path:
  """`iouseg compile-kubeflow TINY FLAGS --output PATH`, through the subcommand's own parser."""
  parser = argparse.ArgumentParser()
  compile_lib.add_compile_arguments(parser)
  assert (
    compile_lib.compile_main(parser.parse_args(TINY + list(flags) + ['--output', str(path)])) == 0
  )
  return path


@pytest.fixture(scope='module')
def spec_file(tmp_path_factory) -> pathlib.Path:
  return compile_file(tmp_path_factory.mktemp('kubeflow') / 'pipeline.yaml')


@pytest.fixture(scope='module')
def spec(spec_file):
  return local_launcher.load_spec(str(spec_file))


def executors(spec) -> dict:
  """Task name -> its ExecutorSpec."""
  deployment = local_launcher.deployment_config(spec)
  return {
    name: deployment.executors[spec.components[task.component_ref.name].executor_label]
    for name, task in spec.root.dag.tasks.items()
  }


def upstream_artifact(spec, task: str, key: str):
  source = spec.root.dag.tasks[task].inputs.artifacts[key].task_output_artifact
  return source.producer_task, source.output_artifact_key


# --- the compiled file --------------------------------------------------------------------------


def test_compiled_file_loads_with_kfps_loader(spec_file):
  from kfp import components

  component = components.load_component_from_file(str(spec_file))
  assert component.name == 'iouseg'
  assert component.pipeline_spec.schema_version == '2.1.0'
  assert component.pipeline_spec.default_pipeline_root == 'gs://bucket/root'
  assert {name: spec.optional for name, spec in component.component_spec.inputs.items()} == {
    'data_root': True,
    'train_args': True,
    'eval_config': True,
  }


def test_every_component_is_a_task_wired_like_the_pipeline(spec):
  tasks = spec.root.dag.tasks
  assert set(tasks) == COMPONENTS | {'ServedModelBaseline'}  # the baseline without a Resolver
  assert {name: set(task.dependent_tasks) for name, task in tasks.items()} == {
    'ImportExampleGen': set(),
    'RecordValidator': {'ImportExampleGen'},
    'StatisticsGen': {'RecordValidator'},
    'SchemaGen': {'StatisticsGen'},
    'ExampleValidator': {'StatisticsGen', 'SchemaGen'},
    'AnomalyGate': {'ExampleValidator'},
    'Transform': {'RecordValidator', 'SchemaGen', 'AnomalyGate'},
    'Trainer': {'RecordValidator', 'Transform', 'SchemaGen'},
    'ServedModelBaseline': set(),
    'Evaluator': {'RecordValidator', 'Trainer', 'ServedModelBaseline'},
    'Pusher': {'Evaluator', 'Trainer', 'RecordValidator'},  # eval records for the warm-up file
    'ModelCardGenerator': set(MODEL_CARD_SOURCES),
  }
  # The Trainer reads the valid raw examples through Transform's graph (nothing materialised).
  assert upstream_artifact(spec, 'Trainer', 'examples') == ('RecordValidator', 'valid_examples')
  assert upstream_artifact(spec, 'Trainer', 'transform_graph') == ('Transform', 'transform_graph')
  assert upstream_artifact(spec, 'Evaluator', 'model') == ('Trainer', 'model')
  assert upstream_artifact(spec, 'Evaluator', 'examples') == ('RecordValidator', 'valid_examples')
  assert upstream_artifact(spec, 'RecordValidator', 'examples') == ('ImportExampleGen', 'examples')
  assert upstream_artifact(spec, 'Pusher', 'model_blessing') == ('Evaluator', 'blessing')
  assert upstream_artifact(spec, 'Evaluator', 'baseline_model') == ('ServedModelBaseline', 'model')


def test_tasks_run_the_tfx_entrypoint_in_the_image(spec):
  for name, executor in executors(spec).items():
    container = executor.container
    assert container.image == IMAGE, name
    assert list(container.command) == RUN_EXECUTOR, name
    assert list(container.args[2:4]) == ['--json_serialized_invocation_args', '{{$}}'], name
  by_task = executors(spec)
  assert by_task['Pusher'].container.args[1] == 'components.dedup_pusher.Executor'
  driver = by_task['ImportExampleGen'].container.lifecycle.pre_cache_check
  assert list(driver.command) == [
    'python',
    '-m',
    'tfx.orchestration.kubeflow.v2.file_based_example_gen.driver',
  ]


def test_gpus_on_the_trainer_only_and_requests_on_transform_and_evaluator(spec):
  resources = {
    name: json_format.MessageToDict(executor.container.resources)
    for name, executor in executors(spec).items()
  }
  assert resources.pop('Trainer') == {
    'cpuLimit': 4.0,
    'memoryLimit': 16.0,
    'accelerator': {'type': 'nvidia.com/gpu', 'count': '2'},
  }
  assert resources.pop('Transform') == {'cpuRequest': 3.0, 'memoryRequest': 6.0}
  assert resources.pop('Evaluator') == {'cpuRequest': 2.0, 'memoryRequest': 8.0}
  assert not any(resources.values()), resources


def test_data_root_steps_and_threshold_are_runtime_parameters(spec):
  declared = {
    name: json_format.MessageToDict(p) for name, p in spec.root.input_definitions.parameters.items()
  }
  assert declared['data_root']['defaultValue'] == 'gs://bucket/data'
  assert json.loads(declared['train_args']['defaultValue']) == {'num_steps': 600}
  eval_config = json.loads(declared['eval_config']['defaultValue'])
  (metric,) = eval_config['metrics_specs'][0]['metrics']
  assert metric['module'] == 'components.iou_metric'
  assert metric['threshold']['value_threshold']['lower_bound'] == 0.5
  tasks = spec.root.dag.tasks
  for task, key, parameter in [
    ('ImportExampleGen', 'input_base', 'data_root'),
    ('Trainer', 'train_args', 'train_args'),
    ('Evaluator', 'eval_config', 'eval_config'),
  ]:
    assert tasks[task].inputs.parameters[key].component_input_parameter == parameter


def test_no_path_of_the_build_machine(spec_file):
  text = spec_file.read_text()
  for local in (
    '/work/',
    '/root/',
    '/tmp/',
    '/home/',
    os.getcwd(),
    sys.prefix,
    str(spec_file.parent),
  ):
    assert local not in text


def test_baseline_resolver_becomes_two_mlmd_query_tasks(tmp_path):
  spec = local_launcher.load_spec(str(compile_file(tmp_path / 'p.yaml', '--baseline', 'resolver')))
  assert set(spec.root.dag.tasks) == COMPONENTS | RESOLVER_TASKS
  by_task = executors(spec)
  for name in RESOLVER_TASKS:
    assert by_task[name].WhichOneof('spec') == 'resolver'
  assert 'metadata.blessed.number_value=1' in json_format.MessageToJson(
    by_task['latest_blessed_model_resolver-model-blessing-resolver']
  )
  assert upstream_artifact(spec, 'Evaluator', 'baseline_model') == (
    'latest_blessed_model_resolver-model-resolver',
    'model',
  )


def test_warm_start_needs_the_baseline_resolver(tmp_path, capfd):
  """Open-source KFP cannot run the Resolver that finds the model to start from: --warm-start alone
  is refused in one line; with --baseline resolver the Trainer's base_model is the resolver's."""
  import tensorflow  # noqa: F401 (its C++ start-up logs are not the command's)

  from iouseg import cli

  capfd.readouterr()
  assert (
    cli.main(
      ['compile-kubeflow', *TINY, '--warm-start', '--output', str(tmp_path / 'refused.yaml')]
    )
    == 2
  )
  err = capfd.readouterr().err.strip()
  assert err.startswith('iouseg compile-kubeflow: error: --warm-start needs --baseline resolver')
  assert len(err.splitlines()) == 1 and not (tmp_path / 'refused.yaml').exists()
  spec = local_launcher.load_spec(
    str(compile_file(tmp_path / 'p.yaml', '--baseline', 'resolver', '--warm-start'))
  )
  assert upstream_artifact(spec, 'Trainer', 'base_model') == (
    'latest_blessed_model_resolver-model-resolver',
    'model',
  )


def test_local_runner_pipeline_keeps_plain_values_and_the_resolver():
  """create_pipeline's defaults (what LocalDagRunner gets) are unchanged by the Kubeflow options."""
  from tfx import v1 as tfx

  from pipeline import pipeline as pipeline_lib
  from pipeline import settings
  from trainer.config import TrainerConfig

  pipeline = pipeline_lib.create_pipeline(
    settings.PipelinePaths('p', '/r', '/d', '/s'),
    settings.DataSettings(),
    settings.TrainingSettings(
      TrainerConfig(), tfx.proto.TrainArgs(num_steps=10), tfx.proto.EvalArgs(num_steps=1)
    ),
    settings.BlessingSettings(0.5),
  )
  assert pipeline_lib.RESOLVER_ID in {c.id for c in pipeline.components}
  assert not [
    v
    for c in pipeline.components
    for v in c.exec_properties.values()
    if isinstance(v, tfx.dsl.experimental.RuntimeParameter)
  ]
  assert all(getattr(c, 'platform_config', None) is None for c in pipeline.components)


# --- submission -----------------------------------------------------------------------------------


def test_submission_arguments_from_steps_and_threshold(spec_file):
  arguments = parameters.submission_arguments(
    str(spec_file), ['data_root=gs://other/data'], train_steps=20, min_mean_iou=0.25
  )
  assert arguments['data_root'] == 'gs://other/data'
  assert json.loads(arguments['train_args']) == {'num_steps': 20}
  (metric,) = json.loads(arguments['eval_config'])['metrics_specs'][0]['metrics']
  assert metric['threshold']['value_threshold']['lower_bound'] == 0.25
  assert metric['threshold']['change_threshold']['direction'] == 'HIGHER_IS_BETTER'
  assert parameters.submission_arguments(str(spec_file)) == {}
  with pytest.raises(ValueError, match='data_root'):
    parameters.submission_arguments(str(spec_file), ['data-root=gs://x'])


def test_submit_calls_the_kfp_client(spec_file, monkeypatch, capsys):
  import kfp

  calls = []

  class FakeClient:
    def __init__(self, host):
      calls.append(('host', host))

    def create_run_from_pipeline_package(self, pipeline_file, **kwargs):
      calls.append((pipeline_file, kwargs))
      return types.SimpleNamespace(run_id='run-1')

  monkeypatch.setattr(kfp, 'Client', FakeClient)
  parser = argparse.ArgumentParser()
  submit.add_submit_arguments(parser)
  assert (
    submit.submit_main(
      parser.parse_args(
        ['--host', 'http://kfp:8080', '--pipeline-file', str(spec_file), '--train-steps', '5']
      )
    )
    == 0
  )
  assert calls[0] == ('host', 'http://kfp:8080')
  pipeline_file, kwargs = calls[1]
  assert pipeline_file == str(spec_file)
  assert kwargs['arguments'] == {'train_args': '{"num_steps": 5}'}
  assert kwargs['experiment_name'] == 'iouseg'
  assert 'run-1' in capsys.readouterr().out


def test_cli_hooks_load_neither_tensorflow_nor_kfp():
  """`iouseg` builds every subcommand's parser at start-up, so adding these flags must stay cheap;
  and it parses every command line before a command holds stderr, so neither building the parser
  nor parsing (a lazily listed --loss included) may load a library that logs as it loads."""
  code = (
    'import argparse, sys\n'
    'from kubeflow import compile, submit\n'
    'compile.add_compile_arguments(argparse.ArgumentParser())\n'
    'submit.add_submit_arguments(argparse.ArgumentParser())\n'
    'from iouseg import cli\n'
    "cli.build_parser().parse_args(['run', '--loss', 'lovasz', '--baseline', 'none'])\n"
    "print(sorted(m for m in ('tensorflow', 'tfx', 'kfp') if m in sys.modules))"
  )
  loaded = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
  assert loaded.stdout.strip() == '[]'


def test_dockerfile_builds_the_project_image_as_non_root():
  text = (pathlib.Path(compile_lib.__file__).parent / 'Dockerfile').read_text()
  # Instructions with continuation lines joined and comments dropped, as Docker reads them.
  text = '\n'.join(line for line in text.splitlines() if not line.lstrip().startswith('#'))
  instructions = [' '.join(i.split()) for i in text.replace('\\\n', ' ').splitlines() if i.strip()]
  assert instructions[0] == 'FROM tensorflow/tfx:1.16.0'
  assert any(i.startswith('ENV ') and 'TF_USE_LEGACY_KERAS=1' in i.split() for i in instructions)
  lock, project = [i for i in instructions if 'pip install' in i]  # the lock first
  assert 'pip install --no-deps -r /tmp/iouseg/requirements.lock' in lock
  assert 'pip install --no-deps --no-build-isolation . ' in project
  users = [i.split()[1] for i in instructions if i.startswith('USER ')]
  assert users and users[-1] not in ('0', 'root')


# --- running the spec -----------------------------------------------------------------------------


def test_launcher_wires_inputs_as_the_spec_does(tmp_path, monkeypatch):
  """With the resolver variant and a stand-in for the containers: each command gets an ExecutorInput
  whose artifacts come from the producers' outputs, the resolver's as an empty list."""
  spec_file = compile_file(tmp_path / 'p.yaml', '--baseline', 'resolver')
  commands = []
  monkeypatch.setattr(
    local_launcher.subprocess,
    'run',
    lambda command, **_: commands.append(command) or types.SimpleNamespace(returncode=0),
  )
  outputs = local_launcher.run_pipeline_spec(
    str(spec_file), str(tmp_path / 'root'), {'train_args': '{"num_steps": 7}'}
  )
  assert set(outputs) == COMPONENTS | RESOLVER_TASKS
  ran = [
    (c[c.index('--executor_class_path') + 1] if '--executor_class_path' in c else c[2])
    for c in commands
  ]
  assert ran[0] == 'tfx.orchestration.kubeflow.v2.file_based_example_gen.driver'
  assert ran[-2:] == ['components.dedup_pusher.Executor', 'components.model_card.executor.Executor']
  assert all(c[0] == sys.executable for c in commands)
  invocation = {
    ran[i]: json.loads(c[c.index('--json_serialized_invocation_args') + 1])
    for i, c in enumerate(commands)
  }
  evaluator = invocation['tfx.components.evaluator.executor.Executor']['inputs']
  assert evaluator['artifacts']['baseline_model'] == {}
  trainer_model = outputs['Trainer']['model'].artifacts[0].uri
  assert evaluator['artifacts']['model']['artifacts'][0]['uri'] == trainer_model
  trainer = invocation['components.encoder_trainer.Executor']['inputs']
  assert trainer['parameterValues']['train_args'] == '{"num_steps": 7}'
  example_gen = invocation['components.record_validation.tolerant_import.Executor']
  assert example_gen['inputs']['parameterValues']['input_base'] == 'gs://bucket/data'
  assert example_gen['inputs']['parameterValues']['output_data_format'] == 6  # an integer, as KFP


# --- the served model as the baseline (no Resolver) -----------------------------------------------

SERVED_BASELINE = 'ServedModelBaseline'


def test_default_spec_compares_with_the_served_model_in_an_uncached_task(spec):
  """Open-source KFP runs no Resolver: the default spec's Evaluator gets the model in --serving-dir
  from a plain container task, which KFP must not cache (the serving dir is outside its cache key)."""
  tasks = spec.root.dag.tasks
  assert SERVED_BASELINE in tasks and not set(tasks) & RESOLVER_TASKS
  assert not tasks[SERVED_BASELINE].caching_options.enable_cache
  assert tasks['Trainer'].caching_options.enable_cache  # the others keep the pipeline's cache
  assert not tasks[SERVED_BASELINE].inputs.artifacts
  assert (
    tasks[SERVED_BASELINE]
    .inputs.parameters['serving_model_dir']
    .runtime_value.constant.string_value
    == 'gs://bucket/serving'
  )
  assert upstream_artifact(spec, 'Evaluator', 'baseline_model') == (SERVED_BASELINE, 'model')
  by_task = executors(spec)
  assert by_task[SERVED_BASELINE].container.args[1] == 'components.served_baseline.Executor'
  assert by_task['Evaluator'].container.args[1] == (
    'components.served_baseline.BaselineTolerantExecutor'
  )
  # Warm-up requests and the model card need these inputs.
  assert upstream_artifact(spec, 'Pusher', 'examples') == ('RecordValidator', 'valid_examples')
  assert upstream_artifact(spec, 'ModelCardGenerator', 'pushed_model') == ('Pusher', 'pushed_model')
  assert tasks['ModelCardGenerator'].inputs.parameters['train_args'].component_input_parameter == (
    'train_args'
  )


def test_baseline_none_compiles_without_a_baseline(tmp_path):
  spec = local_launcher.load_spec(str(compile_file(tmp_path / 'p.yaml', '--baseline', 'none')))
  assert (
    SERVED_BASELINE not in spec.root.dag.tasks and not set(spec.root.dag.tasks) & RESOLVER_TASKS
  )
  assert 'baseline_model' not in spec.root.dag.tasks['Evaluator'].inputs.artifacts
  assert (
    executors(spec)['Evaluator'].container.args[1] == 'tfx.components.evaluator.executor.Executor'
  )


@pytest.mark.e2e
def test_compiled_specs_run_locally_push_a_blessed_model_and_refuse_a_worse_one(tmp_path):
  """Every task of the specs a user submits, through their own commands, on a tiny data set: two
  runs of compiled specs through the local launcher, sharing one serving dir and no Resolver.

  The first (nothing served: the baseline task's declared artifact stays empty, as on KFP's
  backend; with --tune-trials 1 and --infer-data, so the Tuner and batch inference run too) is
  blessed and pushed with its warm-up file and model card, its Trainer trains with the Tuner's
  values and MaskWriter writes one mask per unlabelled record. The second, a worse candidate (one
  step at a learning rate of 1e-12: the initial weights), is compared with the served version and
  refused."""
  from iouseg import demo_data

  data = tmp_path / 'data'
  demo_data.write_demo_data(str(data), train_count=16, eval_count=8, size=32)
  unlabelled = tmp_path / 'unlabelled'
  unlabelled.mkdir()
  # The eval records as they are: BulkInferrer and the `masks` signature read image/encoded only.
  shutil.copy(data / 'eval' / 'demo.tfrecord', unlabelled / 'part-0.tfrecord')
  serving = tmp_path / 'serving'

  def run(name, train_steps, *flags):
    spec_file = compile_file(tmp_path / f'{name}.yaml', '--serving-dir', str(serving), *flags)
    # As a user would submit it: the compiled threshold (0.5) would not bless this little training.
    arguments = parameters.submission_arguments(
      str(spec_file), [f'data_root={data}'], train_steps=train_steps, min_mean_iou=0.0
    )
    return local_launcher.run_pipeline_spec(str(spec_file), str(tmp_path / name), arguments)

  first = run(
    'first', 30, '--infer-data', str(unlabelled), '--tune-trials', '1', '--tune-steps', '2'
  )
  (empty,) = first[SERVED_BASELINE]['model'].artifacts
  assert empty.metadata['served_version'] == ''
  assert not os.path.exists(os.path.join(empty.uri, 'Format-Serving'))
  blessing = first['Evaluator']['blessing'].artifacts[0]
  assert 'baseline_model' not in blessing.metadata
  assert blessing.metadata['blessed'] == 1
  assert (pathlib.Path(blessing.uri) / 'BLESSED').exists()
  pushed = first['Pusher']['pushed_model'].artifacts[0]
  assert pushed.metadata['pushed'] == 1
  version = pathlib.Path(pushed.metadata['pushed_destination'])
  assert version.parent == serving and (version / 'saved_model.pb').exists()
  assert (version / 'assets.extra' / 'tf_serving_warmup_requests').exists()
  assert (version / 'assets.extra' / 'model_card.md').exists()
  assert (version / 'assets.extra' / 'model_card.html').exists()
  # The Tuner's best values are the ones the Trainer trained with.
  best = first['Tuner']['best_hyperparameters'].artifacts[0]
  with open(os.path.join(best.uri, 'best_hyperparameters.txt')) as f:
    tuned = json.load(f)['values']
  model = first['Trainer']['model'].artifacts[0]
  with open(
    os.path.join(model.uri, 'Format-Serving', 'assets.extra', 'tuned_hyperparameters.json')
  ) as f:
    assert json.load(f)['hyperparameters'] == tuned
  masks = first['MaskWriter']['masks'].artifacts[0]
  assert masks.metadata['mask_count'] == 8
  with open(os.path.join(masks.uri, 'index.csv')) as f:
    rows = f.read().splitlines()
  assert rows[0] == 'record,mask,height,width,error' and len(rows) == 9
  assert len(os.listdir(os.path.join(masks.uri, 'masks'))) == 8

  worse = run('worse', 1, '--learning-rate', '1e-12')
  (baseline,) = worse[SERVED_BASELINE]['model'].artifacts
  assert baseline.metadata['served_version'] == version.name
  assert (pathlib.Path(baseline.uri) / 'Format-Serving' / 'saved_model.pb').exists()
  blessing = worse['Evaluator']['blessing'].artifacts[0]
  assert blessing.metadata['blessed'] == 0
  assert blessing.metadata['baseline_model'] == baseline.uri
  assert worse['Pusher']['pushed_model'].artifacts[0].metadata['pushed'] == 0
  assert worse['ModelCardGenerator']['model_card'].artifacts[0].metadata['written'] == 0
  assert sorted(os.listdir(serving)) == [version.name]


# --- batch inference (--infer-data) and the Tuner (--tune-trials) ----------------------------------

INFERENCE_TASKS = {'InferenceExampleGen', 'BulkInferrer', 'MaskWriter'}


def test_infer_data_and_tune_trials_add_their_tasks(tmp_path):
  spec = local_launcher.load_spec(
    str(
      compile_file(
        tmp_path / 'p.yaml', '--infer-data', 'gs://bucket/unlabelled', '--tune-trials', '3'
      )
    )
  )
  tasks = spec.root.dag.tasks
  assert INFERENCE_TASKS | {'Tuner'} <= set(tasks)
  assert set(tasks['Tuner'].dependent_tasks) == {'RecordValidator', 'Transform', 'SchemaGen'}
  assert upstream_artifact(spec, 'Tuner', 'transform_graph') == ('Transform', 'transform_graph')
  assert upstream_artifact(spec, 'Trainer', 'hyperparameters') == ('Tuner', 'best_hyperparameters')
  assert upstream_artifact(spec, 'BulkInferrer', 'examples') == ('InferenceExampleGen', 'examples')
  assert upstream_artifact(spec, 'BulkInferrer', 'model') == ('Trainer', 'model')
  assert upstream_artifact(spec, 'BulkInferrer', 'model_blessing') == ('Evaluator', 'blessing')
  assert upstream_artifact(spec, 'MaskWriter', 'inference_result') == (
    'BulkInferrer',
    'inference_result',
  )
  assert upstream_artifact(spec, 'MaskWriter', 'model_blessing') == ('Evaluator', 'blessing')
  # The unlabelled data is a runtime parameter too; BulkInferrer runs the `masks` signature.
  declared = spec.root.input_definitions.parameters
  assert declared['infer_data_root'].default_value.string_value == 'gs://bucket/unlabelled'
  assert tasks['InferenceExampleGen'].inputs.parameters['input_base'].component_input_parameter == (
    'infer_data_root'
  )
  model_spec = tasks['BulkInferrer'].inputs.parameters['model_spec'].runtime_value.constant
  assert json.loads(model_spec.string_value) == {'model_signature_name': ['masks']}
  custom = json.loads(
    tasks['Tuner'].inputs.parameters['custom_config'].runtime_value.constant.string_value
  )
  assert custom['max_trials'] == 3
  by_task = executors(spec)
  assert by_task['Tuner'].container.args[1] == 'tfx.components.tuner.executor.Executor'
  assert by_task['BulkInferrer'].container.args[1] == (
    'tfx.components.bulk_inferrer.executor.Executor'
  )
  assert by_task['MaskWriter'].container.args[1].startswith('components.mask_writer.')
  # The Tuner trains a model per trial: the Trainer's GPUs and limits.
  resources = {
    name: json_format.MessageToDict(executor.container.resources)
    for name, executor in by_task.items()
  }
  assert (
    resources['Tuner']
    == resources['Trainer']
    == {
      'cpuLimit': 4.0,
      'memoryLimit': 16.0,
      'accelerator': {'type': 'nvidia.com/gpu', 'count': '2'},
    }
  )


def test_default_spec_has_neither_tuner_nor_inference(spec):
  assert not (INFERENCE_TASKS | {'Tuner'}) & set(spec.root.dag.tasks)
  assert 'infer_data_root' not in spec.root.input_definitions.parameters
