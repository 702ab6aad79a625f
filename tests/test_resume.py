"""Resume (trainer/continuation.py): `iouseg run` killed (SIGKILL) in the Trainer after epoch K and
run again with the same settings trains only the remaining epochs, exports a working model and
clears the backup.

The kill comes when the Trainer prints `Epoch K+1/N`: Keras prints it at the start of epoch K+1,
after every callback has finished epoch K, the backup among them. The killed Trainer execution is
not cached, so the re-run executes the Trainer again with the same inputs (everything upstream is
cached) and finds the backup by their hash.
"""

import os
import pathlib
import re
import signal
import subprocess
import threading

import numpy as np
import pytest

from helpers import TINY_CLASSES, iouseg_run_argv, tiny_model_flags

NAME = 'resume'
EPOCHS, KILL_AFTER = 4, 2
TRAIN_STEPS = 100  # 25 steps an epoch: the kill lands well inside epoch KILL_AFTER + 1
EPOCH_LINE = re.compile(r'^Epoch (\d+)/(\d+)$')
TIMEOUT_S = 900

pytestmark = pytest.mark.e2e


def _epochs(lines):
  return [int(m.group(1)) for m in map(EPOCH_LINE.match, lines) if m]


@pytest.fixture(scope='module')
def runs(tiny_demo_data, tmp_path_factory):
  base = tmp_path_factory.mktemp('resume')
  argv = iouseg_run_argv(base, tiny_demo_data, NAME, TRAIN_STEPS) + tiny_model_flags(epochs=EPOCHS)
  env = dict(os.environ, TF_USE_LEGACY_KERAS='1', PYTHONUNBUFFERED='1')

  killed_lines = []
  with open(base / 'killed.stderr', 'w') as stderr:
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
    watchdog = threading.Timer(TIMEOUT_S, process.kill)
    watchdog.start()
    try:
      for line in process.stdout:
        killed_lines.append(line.rstrip('\n'))
        if killed_lines[-1] == f'Epoch {KILL_AFTER + 1}/{EPOCHS}':
          os.kill(process.pid, signal.SIGKILL)
          break
      process.stdout.close()
      killed_rc = process.wait()
    finally:
      watchdog.cancel()
  backups_after_kill = sorted(
    p.relative_to(base) for p in (base / 'root' / 'Trainer' / 'training_backup').glob('*')
  )

  rerun = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
  return {
    'base': base,
    'killed_lines': killed_lines,
    'killed_rc': killed_rc,
    'backups_after_kill': backups_after_kill,
    'rerun': rerun,
  }


def test_the_first_run_was_killed_in_the_trainer_after_epoch_k(runs):
  assert runs['killed_rc'] == -signal.SIGKILL, runs['killed_lines']
  assert _epochs(runs['killed_lines']) == list(range(1, KILL_AFTER + 2))
  assert any(' Trainer ' in line and line.endswith('started') for line in runs['killed_lines'])
  # One backup, named by the hash of the Trainer's inputs and settings, under the pipeline root.
  assert len(runs['backups_after_kill']) == 1, runs['backups_after_kill']
  assert re.fullmatch(r'[0-9a-f]{16}', runs['backups_after_kill'][0].name)


def test_the_rerun_trains_only_the_remaining_epochs(runs):
  rerun = runs['rerun']
  assert rerun.returncode == 0, rerun.stdout + rerun.stderr
  lines = rerun.stdout.splitlines()
  assert _epochs(lines) == list(range(KILL_AFTER + 1, EPOCHS + 1)), lines
  backup = runs['base'] / runs['backups_after_kill'][0]
  assert f'Resuming after epoch {KILL_AFTER}/{EPOCHS} from the backup in {backup}' in lines
  # Upstream outputs came from the cache; the Trainer ran again, from its backup.
  assert re.search(r'^  Transform +cached$', rerun.stdout, re.MULTILINE), rerun.stdout
  assert re.search(r'^  Trainer +executed$', rerun.stdout, re.MULTILINE), rerun.stdout
  assert 'Started from: cold start' in lines


def test_the_backup_is_cleared_once_the_model_is_exported(runs):
  assert not (runs['base'] / runs['backups_after_kill'][0]).exists()


def test_the_resumed_model_is_exported_and_segments_images(runs):
  import tensorflow as tf

  from iouseg import predict
  from transform import data_format

  lines = runs['rerun'].stdout.splitlines()
  assert 'Blessed: yes' in lines
  pushed = next(line for line in lines if line.startswith('Pushed to: '))[len('Pushed to: ') :]
  assert pathlib.Path(pushed, 'saved_model.pb').exists()
  signature = tf.saved_model.load(pushed).signatures['serving_default']
  image = np.random.default_rng(0).integers(0, 255, (40, 56, 3))
  class_ids = predict.predict_bytes(signature, data_format.encode_png(image))
  assert class_ids.shape == (40, 56) and class_ids.max() < TINY_CLASSES
  # The optimizer went on from the backup: its step count is that of all epochs, not of the re-run's.
  checkpoint = tf.train.load_checkpoint(os.path.join(pushed, 'variables', 'variables'))
  assert checkpoint.get_tensor('optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE') == TRAIN_STEPS
