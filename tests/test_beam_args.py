"""The Beam arguments a local run hands every Beam component (`pipeline.beam_runners`)."""

import os

import pytest

from pipeline import beam_runners


@pytest.mark.parametrize('runner', ('in_memory', 'multi_processing'))
def test_a_direct_runner_names_the_checkouts_setup_file(runner):
  args = beam_runners.with_local_dependencies(beam_runners.beam_args(runner))
  assert args[:-1] == beam_runners.beam_args(runner)
  flag, _, path = args[-1].partition('=')
  assert flag == '--setup_file'
  with open(path, encoding='utf-8') as f:
    assert "name='iouseg'" in f.read()
  assert os.path.dirname(path) == os.path.dirname(os.path.dirname(beam_runners.__file__))


@pytest.mark.parametrize(
  'args',
  [
    beam_runners.beam_args('portable'),  # its stager would build and stage the package
    beam_runners.CLUSTER_ARGUMENT_TEMPLATES['dataflow'],
    ['--runner=FlinkRunner', '--flink_master=HOST:8081'],
    ['--direct_running_mode=in_memory', '--requirements_file=requirements.txt'],
    ['--direct_running_mode=in_memory', '--extra_package=dist/iouseg-0.1.0.tar.gz'],
  ],
)
def test_other_runners_and_given_dependencies_are_left_as_they_are(args):
  assert beam_runners.with_local_dependencies(args) == args
