"""The fault matrix: `iouseg run` (its whole process group) SIGKILLed while each component's executor
runs, then the same command again, until a run completes.

One chain of kills, not a pipeline per component: each run is killed when the first executor that
no earlier run has killed starts, so run k re-executes the component killed in run k-1 (its
execution never completed), takes every earlier component from the cache and is killed in the next
component. The chain covers every component of the pipeline with the Tuner and batch inference on;
the run that is not killed is the final clean re-run.

The marker is TFX's own: the launcher logs `Going to run a new execution: ...` right before it makes
the execution's output dirs and calls the executor (tfx/orchestration/portable/launcher.py,
`_run_executor`), after `Component <id> is running.` (the LocalDagRunner). `--verbose` puts both on
stderr, so the command is the same for every run of the chain. After every kill and after the last
run: no artifact ML Metadata holds as LIVE lacks its files, no blessing or push points at a model
without `saved_model.pb`, and every numbered folder in the serving dir is a complete version.
"""

import os
import re
import shutil
import signal

import pytest

from helpers import (
  PIPELINE_COMPONENTS,
  iouseg_run_argv,
  run_watched,
  tiny_model_flags,
  torn_outputs,
)

NAME = 'fault_matrix'
# The optional components the chain turns on (--tune-trials, --infer-data).
OPTIONAL_COMPONENTS = ('Tuner', 'InferenceExampleGen', 'BulkInferrer', 'MaskWriter')
RUNNING = re.compile(r'\] Component (\S+) is running\.$')
EXECUTOR_STARTS = '] Going to run a new execution: '
PROGRESS = re.compile(r'^\[ ?\d+/\d+\] (\S+) +(executed|cached|failed|skipped)\b')

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


class ExecutorKiller:
  """`run_watched`'s reaction: the kill when the executor of a component not in `spared` starts;
  `killed` is that component afterwards (None: the run ended by itself)."""

  def __init__(self, spared):
    self.spared, self.running, self.killed = spared, None, None

  def __call__(self, line: str) -> bool:
    match = RUNNING.search(line)
    if match:
      self.running = match.group(1)
    elif EXECUTOR_STARTS in line and self.running not in self.spared:
      self.killed = self.running
      return True
    return False


def _inputs(metadata: str) -> dict:
  """{component: the (key, artifact id) pairs of its latest execution's inputs}. Every key of an
  event's path: an artifact given under two keys (the Evaluator's model as its own baseline) has
  one event naming both."""
  from iouseg import mlmd_store

  store = mlmd_store.open_store(metadata)
  latest = {}
  for execution in sorted(store.get_executions(), key=lambda e: e.id):
    latest[mlmd_store.node_id(store, execution)] = execution.id
  return {
    node: frozenset(
      (step.key, event.artifact_id)
      for event in store.get_events_by_execution_ids([execution_id])
      if event.type in mlmd_store.INPUT_EVENTS
      for step in event.path.steps
      if step.HasField('key')
    )
    for node, execution_id in latest.items()
  }


@pytest.fixture(scope='module')
def chain(tiny_demo_data, tmp_path_factory):
  base = tmp_path_factory.mktemp('fault_matrix')
  unlabelled = base / 'unlabelled'  # the eval records, their masks unread by batch inference
  shutil.copytree(tiny_demo_data / 'eval', unlabelled)
  argv = (
    iouseg_run_argv(base, tiny_demo_data, NAME, train_steps=2)
    + tiny_model_flags(epochs=1)
    + ['--tune-trials', '1', '--tune-steps', '1', '--infer-data', str(unlabelled), '--verbose']
  )
  metadata, serving = str(base / 'metadata.sqlite'), str(base / 'serving')
  runs, killed = [], []
  # A run per kill, and the run that completes.
  while len(runs) <= len(PIPELINE_COMPONENTS) + len(OPTIONAL_COMPONENTS):
    killer = ExecutorKiller(spared=killed)
    run = run_watched(argv, killer)
    (base / f'run{len(runs)}.stderr').write_text(run['stderr'])  # for a failure's reader
    states = dict(m.groups() for m in map(PROGRESS.match, run['stdout'].splitlines()) if m)
    torn = torn_outputs(metadata, serving)
    runs.append(dict(run, killed=killer.killed, states=states, torn=torn, inputs=_inputs(metadata)))
    if killer.killed is None:
      break
    killed.append(killer.killed)
  return {'base': base, 'runs': runs, 'killed': killed}


def test_every_component_was_killed_once_while_its_executor_ran(chain):
  assert sorted(chain['killed']) == sorted(PIPELINE_COMPONENTS + OPTIONAL_COMPONENTS)
  for run in chain['runs'][:-1]:
    assert run['rc'] == -signal.SIGKILL, run['stdout']


def test_the_run_after_the_last_kill_succeeds_blessed_and_pushed(chain):
  final = chain['runs'][-1]
  assert final['rc'] == 0, final['stdout']
  assert 'Blessed: yes' in final['stdout'].splitlines()
  versions = [name for name in os.listdir(chain['base'] / 'serving') if not name.startswith('.')]
  assert (
    len(versions) == 1 and (chain['base'] / 'serving' / versions[0] / 'saved_model.pb').exists()
  )
  # The staging dir of the killed push is gone with the push that completed.
  assert os.listdir(chain['base'] / 'serving') == versions


def test_each_rerun_reuses_what_completed_and_redoes_the_killed_component(chain):
  """The killed component runs again (its execution never completed); every component whose
  inputs an earlier execution completed with comes from the cache. (A component whose inputs
  changed runs again: the Evaluator once a model is blessed, its baseline, and what follows.)"""
  completed = {}  # component -> the input sets of its completed executions
  for previous, run in zip(chain['runs'], chain['runs'][1:]):
    for component, state in previous['states'].items():
      if state in ('executed', 'cached'):
        completed.setdefault(component, set()).add(previous['inputs'][component])
    assert run['states'][previous['killed']] == 'executed', run['stdout']
    for component, state in run['states'].items():
      if component != 'latest_blessed_model_resolver':  # a Resolver never caches
        done_before = run['inputs'].get(component) in completed.get(component, ())
        assert state == ('cached' if done_before else 'executed'), (component, run['stdout'])


def test_no_kill_leaves_an_output_a_later_run_would_take_as_good(chain):
  for run in chain['runs']:
    assert run['torn'] == [], (run['killed'], run['torn'])
