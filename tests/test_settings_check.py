"""Bad settings stop `iouseg run` (and `compile-kubeflow`) when the flags are parsed: one line
`iouseg run: error: ...` naming the flag and the fix, no traceback, exit status 2, and nothing
written (no pipeline root, so no component ran).

The flag cases call `iouseg.cli.main` in this process (the checks are the same; it saves a
TensorFlow start per case); the data roots and one flag go through the real command in a subprocess.
What proves that nothing ran is what a run leaves behind: the folder given for the pipeline root,
the serving dir and the metadata holds nothing afterwards (the command writes its log under the
pipeline root before it starts the pipeline), and nothing is printed on stdout, where each
component's start is.
"""

import os
import shutil
import subprocess
import sys

import pytest

from iouseg import cli

from helpers import tiny_model_flags, tiny_run_args

# (flags, what the one line must contain): the flag, and the fix or the reason.
BAD_SETTINGS = [
  (
    ['--image-size', '100', '--depth', '3'],
    ['--image-size 100', 'multiple of 8', '96 or 104', '--depth'],
  ),
  (['--image-size', '30', '--depth', '2'], ['--image-size 30', 'multiple of 4', '28 or 32']),
  (['--num-classes', '1'], ['--num-classes', 'at least 2']),
  (['--ignore-label', '2'], ['--ignore-label 2', 'class id', '--num-classes 4', 'from 4 to 255']),
  (['--ignore-label', '300'], ['--ignore-label', '0..255']),
  (['--num-classes', '256'], ['--num-classes', 'at most 255']),
  (['--learning-rate', '0'], ['--learning-rate', '> 0']),
  (['--learning-rate=-1e-3'], ['--learning-rate', '> 0']),
  (['--batch-size', '0'], ['--batch-size', 'at least 1']),
  (['--base-filters', '0'], ['--base-filters', 'at least 1']),
  (['--epochs', '0'], ['--epochs', 'at least 1']),
  (['--train-steps', '0'], ['--train-steps', 'at least 1']),
  (['--eval-steps', '0'], ['--eval-steps', 'at least 1']),
  (['--max-bad-fraction', '1.5'], ['--max-bad-fraction', '0..1']),
  (['--class-names', 'background,disc'], ['--class-names', '2 names', '--num-classes 4']),
  (['--class-min-iou', 'nosuch=0.5'], ['--class-min-iou', 'nosuch']),
]


@pytest.fixture(scope='module')
def data_roots(tiny_demo_data, tmp_path_factory):
  base = tmp_path_factory.mktemp('data_roots')
  (base / 'empty').mkdir()
  only_train = base / 'only_train'  # both split folders, nothing in eval/
  (only_train / 'eval').mkdir(parents=True)
  shutil.copytree(tiny_demo_data / 'train', only_train / 'train')
  return {
    'good': tiny_demo_data,
    'empty': base / 'empty',
    'only_train': only_train,
    'missing': base / 'nonexistent',
  }


def _assert_refused(returncode, err, tmp_path, expected, prog='iouseg run'):
  assert returncode == 2, err
  lines = err.strip().splitlines()
  assert len(lines) == 1, err
  assert lines[0].startswith(f'{prog}: error: '), lines[0]
  for text in expected:
    assert text in lines[0], (text, lines[0])
  assert 'Traceback' not in err
  # Nothing written: no pipeline root (so no log), serving dir, metadata or compiled file.
  assert sorted(os.listdir(tmp_path)) == []


@pytest.mark.parametrize('flags,expected', BAD_SETTINGS, ids=lambda v: ' '.join(v)[:40])
def test_a_bad_setting_is_one_line_naming_the_flag(flags, expected, data_roots, tmp_path, capfd):
  returncode = cli.main(tiny_run_args(tmp_path, data_roots['good'], *flags))
  out, err = capfd.readouterr()
  assert out == ''
  _assert_refused(returncode, err, tmp_path, expected)


DATA_ROOTS = [
  ('missing', ['--data-root', 'nonexistent: no such folder']),
  ('empty', ['--data-root', 'no files directly in it']),
  ('only_train', ['--data-root', 'no files match eval/*', 'eval split']),
]


def test_good_settings_pass_the_checks(data_roots):
  from pipeline import flags, local_runner

  args = cli.build_parser().parse_args(tiny_run_args(data_roots['good'].parent, data_roots['good']))
  flags.check_args(args)
  flags.check_data_root(args.data_root, local_runner.split_patterns_for(args.data_root))
  flags.check_data_root('gs://bucket/nothing/here', None)  # buckets: the tasks read them


def test_compile_kubeflow_checks_the_same_settings(tmp_path, capfd):
  import tensorflow  # noqa: F401 (its C++ start-up logs are not the command's)

  capfd.readouterr()
  argv = [
    'compile-kubeflow',
    '--image',
    'example/iouseg:test',
    '--pipeline-root',
    'gs://b/root',
    '--data-root',
    'gs://b/data',
    '--serving-dir',
    'gs://b/serving',
    '--output',
    str(tmp_path / 'p.yaml'),
    *tiny_model_flags(),
    '--image-size',
    '100',
    '--depth',
    '3',
  ]
  returncode = cli.main(argv)
  _, err = capfd.readouterr()
  _assert_refused(
    returncode, err, tmp_path, ['--image-size 100', '96 or 104'], prog='iouseg compile-kubeflow'
  )
  assert not (tmp_path / 'p.yaml').exists()


def _iouseg():
  script = shutil.which('iouseg', path=os.path.dirname(sys.executable))
  return [script] if script else [sys.executable, '-m', 'iouseg.cli']


@pytest.mark.e2e
@pytest.mark.parametrize(
  'root,flags,expected',
  [('good', ['--image-size', '100', '--depth', '3'], ['--image-size 100', '96 or 104'])]
  + [(root, [], expected) for root, expected in DATA_ROOTS],
)
def test_the_command_refuses_at_once(root, flags, expected, data_roots, tmp_path):
  """The real command (in a subprocess: what the libraries log as they load must not reach the
  terminal): exit status 2, one line on stderr, no component started (no progress line on stdout)
  and nothing written."""
  env = dict(os.environ, TF_USE_LEGACY_KERAS='1')
  done = subprocess.run(
    _iouseg() + tiny_run_args(tmp_path, data_roots[root], *flags),
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert done.stdout == ''
  _assert_refused(done.returncode, done.stderr, tmp_path, expected)
