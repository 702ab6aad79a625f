"""What `iouseg run` shows a user: the real command in a subprocess, on the tiny demo data.

Three runs of one pipeline root, in order: the first (every component executed; third-party output
in the log file named by the summary, none on the terminal), the same with --verbose (the logs on
the terminal, every component but the Evaluator's cached), and one that fails in RecordValidator
(its error on the terminal).
"""

import os
import re
import subprocess

import pytest

from helpers import PIPELINE_COMPONENTS, iouseg_run_argv, tiny_model_flags

# The order of the progress lines: the Resolver runs right after ImportExampleGen.
NODES = (PIPELINE_COMPONENTS[0], 'latest_blessed_model_resolver', *PIPELINE_COMPONENTS[1:])
PROGRESS = re.compile(
  r'^\[ ?(\d+)/(\d+)\] (\S+) +(started|executed|cached|failed|skipped)'
  r'(?: +(\d+\.\d) s)?$'
)
KERAS_EPOCH = re.compile(r'^Epoch \d+/\d+$|^\d+/\d+ - \d+m?s - loss: .* val_mean_iou: ')
# What third-party output looks like: Python warnings, logging, TensorFlow's C++ log lines.
NOISE = re.compile(
  r'Warning\b|WARNING|\bINFO\b|^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}: [IWEF] |'
  r'Unable to register|TensorRT|deprecated',
  re.MULTILINE,
)
CPP_LOG_LINE = re.compile(
  r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}: [IWEF] \S+\.cc:\d+\]', re.MULTILINE
)
LOG_LINE = 'Log (TFX, Beam, TensorFlow): '

pytestmark = pytest.mark.e2e


@pytest.fixture(scope='module')
def runs(tiny_demo_data, tmp_path_factory):
  base = tmp_path_factory.mktemp('run_output')
  argv = iouseg_run_argv(base, tiny_demo_data, 'run_output', train_steps=6)
  # TensorFlow's C++ logs at every level, and Python's default warning filters: all of it must stay
  # off the terminal.
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONWARNINGS'}
  env.update(TF_USE_LEGACY_KERAS='1', TF_CPP_MIN_LOG_LEVEL='0')

  def run(*flags, **model):
    return subprocess.run(
      argv + list(flags) + tiny_model_flags(**model),
      env=env,
      capture_output=True,
      text=True,
      timeout=900,
    )

  results = {'base': base, 'first': run()}
  results['logs_after_first'] = sorted(os.listdir(base / 'root' / 'logs'))
  results['verbose'] = run('--verbose')
  results['logs_after_verbose'] = sorted(os.listdir(base / 'root' / 'logs'))
  # Classes 2 and 3 of the demo masks are out of range for two classes: RecordValidator fails.
  results['failing'] = run(num_classes=2)
  return results


def _progress(stdout: str):
  """[(node, event, seconds or None)] of the progress lines, with the count checked."""
  found = []
  for line in stdout.splitlines():
    match = PROGRESS.match(line)
    if match:
      count, total, node, event, seconds = match.groups()
      assert int(total) == len(NODES), line
      assert (event == 'started') == (seconds is None), line
      found.append((int(count), node, event, None if seconds is None else float(seconds)))
  return found


def _assert_each_node_starts_then_ends(progress, states):
  expected = []
  for k, (node, state) in enumerate(zip(NODES, states), start=1):
    expected += [(k, node, 'started'), (k, node, state)]
  assert [(count, node, event) for count, node, event, _ in progress] == expected
  assert all(seconds >= 0 for _, _, event, seconds in progress if event != 'started')


def test_first_run_shows_progress_epochs_and_summary_and_nothing_else(runs):
  first = runs['first']
  assert first.returncode == 0, first.stderr
  _assert_each_node_starts_then_ends(_progress(first.stdout), ['executed'] * len(NODES))
  lines = first.stdout.splitlines()
  summary = lines.index(next(line for line in lines if line.startswith('Run ')))
  # Before the summary: progress lines and, inside the Trainer's, its Keras epoch lines; no more.
  trainer_start = lines.index(
    next(
      line
      for line in lines
      if PROGRESS.match(line) and ' Trainer ' in line and line.endswith('started')
    )
  )
  for k, line in enumerate(lines[:summary]):
    if not PROGRESS.match(line):
      assert KERAS_EPOCH.match(line) and k > trainer_start, line
  assert any(KERAS_EPOCH.match(line) for line in lines[:summary])
  assert lines[summary + 1] == 'Components:'
  for node in NODES:
    assert any(re.fullmatch(rf'  {node} +executed', line) for line in lines), node
  assert 'Blessed: yes' in lines and any(line.startswith('Pushed to: ') for line in lines)
  assert lines[-1].startswith(LOG_LINE)
  assert not NOISE.search(first.stdout), NOISE.search(first.stdout)
  assert first.stderr == ''


def test_third_party_output_is_in_the_log_the_summary_names(runs):
  first = runs['first']
  log_path = first.stdout.splitlines()[-1][len(LOG_LINE) :]
  assert os.path.dirname(log_path) == str(runs['base'] / 'root' / 'logs')
  assert runs['logs_after_first'] == [os.path.basename(log_path)]
  with open(log_path, encoding='utf-8') as f:
    log = f.read()
  assert CPP_LOG_LINE.search(log)  # TensorFlow's C++ logs, from its import on
  assert ' INFO absl local_dag_runner.py' in log and 'Component Trainer is running.' in log
  assert re.search(r' WARNING \S+ ', log)
  # The project's own warnings are fixed, not only moved.
  assert 'custom_executor_spec' not in log and 'weighted_metrics' not in log
  # A local run names the checkout's setup file, so no Beam component has TFX build a package of
  # itself for the DirectRunner (`beam_runners.with_local_dependencies`).
  assert log.count('Nonempty beam arg setup_file already includes dependency') >= 4
  assert 'Attempting to infer TFX Python dependency' not in log


def test_verbose_shows_the_logs_on_the_terminal(runs):
  verbose = runs['verbose']
  assert verbose.returncode == 0, verbose.stderr
  _assert_each_node_starts_then_ends(
    _progress(verbose.stdout),
    [
      'executed'
      if node in ('latest_blessed_model_resolver', 'Evaluator', 'Pusher', 'ModelCardGenerator')
      else 'cached'
      for node in NODES
    ],
  )
  assert 'Component Trainer is running.' in verbose.stderr and CPP_LOG_LINE.search(verbose.stderr)
  assert re.search(r' WARNING \S+ ', verbose.stderr)
  assert LOG_LINE not in verbose.stdout and 'Blessed: yes' in verbose.stdout
  assert runs['logs_after_verbose'] == runs['logs_after_first']  # no log file of its own


def test_a_failing_component_shows_its_error_on_the_terminal(runs):
  failing = runs['failing']
  assert failing.returncode == 1
  progress = _progress(failing.stdout)
  assert progress[-2:] == [
    (3, 'RecordValidator', 'started', None),
    (3, 'RecordValidator', 'failed', progress[-1][3]),
  ]
  assert failing.stderr.startswith('Error: BadRecordsError: ')
  assert 'out of range' in failing.stderr
  log_path = failing.stderr.splitlines()[-1].rpartition(': ')[2]
  with open(log_path, encoding='utf-8') as f:
    assert 'Traceback (most recent call last)' in f.read()
  assert not NOISE.search(failing.stdout + failing.stderr)
