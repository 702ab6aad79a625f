"""Every flag of every `iouseg` subcommand refuses a bad value in one line: exit status 2,
`iouseg COMMAND: error: ...` naming the flag, no traceback, nothing written.

The flags come from the parsers themselves (`iouseg.cli.build_parser`), so a new flag fails
`test_every_flag_has_a_row` until it has a row here or is put among those that take any value.
Rows of two kinds: generated ones (a word for a number, a value that is not one of the choices) and
the hand-written `BAD_VALUES` (out of range, a missing path, an output under a file, a malformed
list). Each case calls `iouseg.cli.main` in this process: every command checks its flags before it
imports TensorFlow, so a case takes milliseconds. What proves nothing was written: every output of
the command line lies under the test's own empty folder, which stays empty.
"""

import argparse
import json
import os

import pytest
import yaml

from iouseg import cli

from helpers import SAMPLES, tiny_run_args

MISSING, BLOCKED = '{missing}', '{blocked}'  # a path that does not exist; one under a regular file
# Flags that take any value of their type: a name, a seed, a cluster's path or address.
ANY_VALUE = {
  'demo-data': {'--seed'},
  'convert': {'--seed'},
  'run': {'--seed', '--beam-arg'},
  # Read by the cluster's tasks, not here; the image and accelerator are names the cluster knows.
  'compile-kubeflow': {
    '--seed',
    '--beam-arg',
    '--pipeline-root',
    '--serving-dir',
    '--image',
    '--gpu-type',
  },
  'submit-kubeflow': {'--host', '--experiment', '--run-name', '--namespace', '--pipeline-root'},
  'report': {'--pipeline-name'},  # a name with no run is named when the store is read
  # Each image is checked as it is read: a bad one is named and passed over, the exit status 1
  # (tests/test_inference_faults.py).
  'predict': {'images'},
  'export': set(),
}
# The settings of a pipeline, the same flags for `iouseg run` and `compile-kubeflow`.
PIPELINE_VALUES = {
  '--image-size': ['0', '30'],
  '--num-classes': ['1', '256'],
  '--ignore-label': ['2', '300'],
  '--class-names': ['background,disc', 'a,a,b,c', 'a,,b,c'],  # a count mismatch, twice, empty
  '--base-filters': ['0'],
  '--depth': ['-1'],
  '--min-scale': ['0'],
  '--max-scale': ['0.1'],
  '--flip-swap': ['bogus', '1:2:3', '1:9', 'names'],
  '--loss': ['nosuch'],
  '--loss-switch': ['1.5'],
  '--cross-entropy-weight': ['-1'],
  '--learning-rate': ['0', 'nan'],
  '--warmup-steps': ['-1'],
  '--weight-decay': ['-1'],
  '--batch-size': ['0'],
  '--epochs': ['0'],
  '--cache-mib': ['-1'],
  '--data-root': [MISSING],
  '--pipeline-name': [''],
  '--max-bad-fraction': ['1.5', 'nan'],
  '--infer-data': [MISSING],
  '--train-steps': ['0'],
  '--tune-trials': ['-1'],
  '--tune-steps': ['0'],
  '--eval-steps': ['0'],
  '--min-mean-iou': ['1.5', '-0.1', 'nan'],
  '--class-min-iou': ['class_1', 'class_1=2', 'nosuch=0.5'],
  '--max-class-drop': ['2'],
  '--slice-by': [','],
  '--beam-workers': ['0'],
  '--encoder-weights': [MISSING],
  '--freeze-encoder-steps': ['-1'],
  '--encoder-lr-multiplier': ['0', '1.5'],
  '--slide-overlap': ['-0.1', '1'],
  # Out of range, and below 1 without --resize none (the base command line stretches).
  '--crop-cat-max-ratio': ['0', '1.5', 'nan', '0.75'],
}
BAD_VALUES = {
  'demo-data': {
    '--output': [BLOCKED],
    '--train-count': ['0'],
    '--eval-count': ['0'],
    '--size': ['0'],
  },
  'convert': {
    '--input': [MISSING],
    '--output': [BLOCKED],
    '--num-classes': ['0'],
    '--ignore-label': ['-1', '300'],
    '--eval-fraction': ['1.5'],
    '--shards': ['0'],
  },
  'run': {
    **PIPELINE_VALUES,
    '--pipeline-root': [BLOCKED],
    '--serving-dir': [BLOCKED],
    '--metadata': [BLOCKED],
    '--metadata-password-file': [MISSING],  # and an SQLite --metadata has no password
  },
  'compile-kubeflow': {
    **PIPELINE_VALUES,
    '--output': [BLOCKED, '{out}/pipeline.json'],
    **{
      flag: ['-1']
      for flag in (
        '--gpu-count',
        '--trainer-cpu',
        '--trainer-memory-gb',
        '--transform-cpu',
        '--transform-memory-gb',
        '--evaluator-cpu',
        '--evaluator-memory-gb',
      )
    },
    # `iouseg run`'s metadata flags: no value is right on Kubeflow.
    '--metadata': ['runs/metadata.sqlite'],
    '--metadata-password-file': ['password.txt'],
  },
  'submit-kubeflow': {
    '--pipeline-file': [MISSING, '{inputs}/not_a_spec.yaml'],
    '--param': ['data_root', 'nosuch=1'],
    '--train-steps': ['0'],
    '--min-mean-iou': ['1.5'],
  },
  'predict': {'--model': [MISSING], '--output': [BLOCKED]},
  'report': {
    '--metadata': [MISSING],
    '--output': [BLOCKED],
    '--max-images': ['-1'],
    '--metadata-password-file': [MISSING],
  },
  'export': {
    '--model': [MISSING],
    '--output': [BLOCKED],
    '--eval-data': [MISSING],
    '--calibration-data': [MISSING],
    '--calibration-records': ['0'],
    '--threads': ['0'],
  },
}


def _subparsers() -> dict:
  parser = cli.build_parser()
  return next(
    a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
  ).choices.copy()


def _flags(subparser):
  """(flag or positional name, its action) of each argument a user gives a value to."""
  for action in subparser._actions:
    if isinstance(action, argparse._HelpAction) or action.nargs == 0:  # --help, switches
      continue
    yield (action.option_strings[-1] if action.option_strings else action.dest), action


def _generated_values(action) -> list:
  """A word where a number belongs, a value that is none of the choices."""
  values = ['x'] if action.type in (int, float) else []
  return values + (['nosuch'] if action.choices else [])


def _cases():
  for command, subparser in _subparsers().items():
    for flag, action in _flags(subparser):
      values = _generated_values(action) + BAD_VALUES.get(command, {}).get(flag, [])
      for value in values:
        yield pytest.param(command, flag, value, id=f'{command} {flag} {value!r}')


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
  """What the command lines read: a data root, a model folder, an image, a metadata file, a
  pipeline spec with the parameters `iouseg compile-kubeflow` declares, and a file to put an
  output under."""
  base = tmp_path_factory.mktemp('cli_inputs')
  for split in ('train', 'eval'):
    (base / 'data' / split).mkdir(parents=True)
    (base / 'data' / split / 'part-0.tfrecord').write_bytes(b'')
  (base / 'unlabelled').mkdir()
  (base / 'unlabelled' / 'part-0.tfrecord').write_bytes(b'')
  (base / 'model').mkdir()
  (base / 'model' / 'saved_model.pb').write_bytes(b'')  # what the checks look for
  (base / 'image.png').write_bytes(b'')
  (base / 'metadata.sqlite').write_bytes(b'')
  (base / 'a_file').write_text('not a folder')
  eval_config = {'metrics_specs': [{'metrics': [{'threshold': {'value_threshold': {}}}]}]}
  eval_config['metrics_specs'][0]['metrics'][0]['threshold']['value_threshold']['lower_bound'] = 0.5
  parameters = {
    'data_root': {'parameterType': 'STRING', 'defaultValue': 'gs://b/data'},
    'train_args': {'parameterType': 'STRING', 'defaultValue': '{"num_steps": 400}'},
    'eval_config': {'parameterType': 'STRING', 'defaultValue': json.dumps(eval_config)},
  }
  spec = {'root': {'inputDefinitions': {'parameters': parameters}}}
  (base / 'pipeline.yaml').write_text(yaml.safe_dump(spec))
  (base / 'not_a_spec.yaml').write_text('- a list, not a spec\n')
  return base


def _base_argv(command: str, inputs, out) -> list:
  """A command line of `command` that passes every check, its outputs under `out`."""
  return {
    'demo-data': ['demo-data', '--output', f'{out}/demo'],
    'convert': [
      *('convert', '--input', str(SAMPLES / 'nuclei'), '--output', f'{out}/records'),
      *('--num-classes', '2'),
    ],
    'run': tiny_run_args(out, inputs / 'data', '--infer-data', str(inputs / 'unlabelled')),
    'compile-kubeflow': [
      *('compile-kubeflow', '--image', 'example/iouseg:test', '--data-root', str(inputs / 'data')),
      *('--pipeline-root', 'gs://b/root', '--serving-dir', 'gs://b/serving'),
      *('--output', f'{out}/pipeline.yaml'),
    ],
    'submit-kubeflow': [
      *('submit-kubeflow', '--host', 'http://127.0.0.1:9'),
      *('--pipeline-file', str(inputs / 'pipeline.yaml')),
    ],
    'predict': [
      *('predict', '--model', str(inputs / 'model'), '--output', f'{out}/masks'),
      str(inputs / 'image.png'),
    ],
    'report': [
      'report',
      '--metadata',
      str(inputs / 'metadata.sqlite'),
      '--output',
      f'{out}/r.html',
    ],
    'export': [
      *('export', '--model', str(inputs / 'model'), '--format', 'tflite'),
      *('--output', f'{out.parent}/model.tflite', '--eval-data', str(inputs / 'data' / 'eval')),
      *('--quantize', 'int8', '--calibration-data', str(inputs / 'data' / 'train')),
    ],
  }[command]


def _with_value(argv: list, flag: str, value: str) -> list:
  """`argv` with `flag` given `value` (in place of its value there, else appended)."""
  if not flag.startswith('--'):  # a positional: the last item of the command line
    return argv[:-1] + [value]
  if flag in argv:
    i = argv.index(flag)
    return argv[:i] + [f'{flag}={value}'] + argv[i + 2 :]
  return argv + [f'{flag}={value}']


def test_every_flag_has_a_row():
  """A flag that takes a value has a bad value of its own here, or takes any value of its type."""
  without = []
  for command, subparser in _subparsers().items():
    for flag, action in _flags(subparser):
      generated_only = bool(action.choices)  # the choices are all it takes
      hand = BAD_VALUES.get(command, {}).get(flag)
      if not (hand or generated_only or flag in ANY_VALUE.get(command, ())):
        without.append(f'{command} {flag}')
  assert without == []
  # No row for a flag that is gone.
  for command, rows in BAD_VALUES.items():
    assert set(rows) <= {flag for flag, _ in _flags(_subparsers()[command])}, command


def test_the_base_command_lines_pass_the_checks(inputs, tmp_path):
  from pipeline import flags

  for command in _subparsers():
    args = cli.build_parser().parse_args(_base_argv(command, inputs, tmp_path))
    if command == 'run':
      flags.check_args(args)
    else:
      args.check_settings(args)
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('command,flag,value', list(_cases()))
def test_a_bad_value_is_refused_in_one_line(command, flag, value, inputs, tmp_path, capfd):
  out = tmp_path / 'out'
  value = value.format(
    missing=inputs / 'nonexistent', blocked=inputs / 'a_file' / 'x', out=out, inputs=inputs
  )
  argv = _with_value(_base_argv(command, inputs, out), flag, value)
  try:
    status = cli.main(argv)
  except SystemExit as e:  # argparse's own refusals
    status = e.code
  stdout, stderr = capfd.readouterr()
  assert status == 2, (stdout, stderr)
  lines = stderr.strip().splitlines()
  assert len(lines) == 1, stderr
  assert lines[0].startswith(f'iouseg {command}: error: '), lines[0]
  assert (flag if flag.startswith('--') else value) in lines[0], lines[0]
  assert 'Traceback' not in stderr and stdout == ''
  assert os.listdir(tmp_path) == []
