"""`--distribution multi_worker`: two local worker processes train the project's model together,
and end where one process training the same global batch on two replicas ends.

Each worker is this file run as a script with its own TF_CONFIG (as Kubeflow's TFJob or Vertex AI
set it). The reference is one process with MirroredStrategy over two logical CPU devices: the same
global batch of 4 split into the same two halves, per-replica losses averaged, gradients summed.
Two workers that trained independently (each on the whole batch, no all-reduce) end elsewhere: the
single-replica run on the global batch shows how far, so the comparison can tell them apart.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

STEPS = 3
GLOBAL_BATCH = 4


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def train(mode: str, out_path: str, index: int = 0, ports=()) -> None:
  """Trains STEPS steps of the tiny model; writes the loss history and the final weights.

  mode: 'worker' (MultiWorkerMirroredStrategy, worker `index` of `ports`), 'two_replicas' (one
  process, MirroredStrategy over two logical CPUs) or 'one_replica' (no distribution)."""
  if mode == 'worker':
    os.environ['TF_CONFIG'] = json.dumps(
      {
        'cluster': {'worker': [f'127.0.0.1:{port}' for port in ports]},
        'task': {'type': 'worker', 'index': index},
      }
    )
  import tensorflow as tf
  import tf_keras

  from trainer import distribution, task
  from trainer.config import TrainerConfig

  config = TrainerConfig.from_flat(
    image_size=16,
    base_filters=4,
    depth=1,
    batch_size=GLOBAL_BATCH,
    distribution='multi_worker' if mode == 'worker' else 'mirrored',
  )
  if mode == 'worker':
    strategy = distribution.get_strategy(config.runtime.distribution)
  elif mode == 'two_replicas':
    (cpu,) = tf.config.list_physical_devices('CPU')
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
  else:
    strategy = tf.distribute.get_strategy()
  assert strategy.num_replicas_in_sync == (1 if mode == 'one_replica' else 2)
  rng = np.random.default_rng(0)  # the same data everywhere; each replica takes its half-batch
  images = rng.normal(size=(16, 16, 16, 3)).astype(np.float32)
  labels = np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(16, 16, 16))]
  weights = np.ones((16, 16, 16), np.float32)
  dataset = (
    tf.data.Dataset.from_tensor_slices((images, labels, weights)).repeat().batch(GLOBAL_BATCH)
  )
  with strategy.scope():
    tf_keras.utils.set_random_seed(0)
    model = task.compiled_model(config)
  history = model.fit(dataset, steps_per_epoch=STEPS, epochs=1, verbose=0)
  np.savez(
    out_path,
    loss=history.history['loss'],
    **{f'w{i}': w for i, w in enumerate(model.get_weights())},
  )


def _run_all(tmp_path) -> dict:
  """Starts every training process at once; returns {name: saved npz}."""
  env = {
    **os.environ,
    'TF_USE_LEGACY_KERAS': '1',
    'TF_CPP_MIN_LOG_LEVEL': '2',
    'PYTHONPATH': os.pathsep.join(
      [os.path.dirname(os.path.dirname(__file__)), os.environ.get('PYTHONPATH', '')]
    ),
  }
  ports = json.dumps([_free_port(), _free_port()])
  jobs = {
    'worker0': ['worker', '0', ports],
    'worker1': ['worker', '1', ports],
    'two_replicas': ['two_replicas'],
    'one_replica': ['one_replica'],
  }
  processes = {
    name: subprocess.Popen(
      [sys.executable, __file__, str(tmp_path / f'{name}.npz')] + argv,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for name, argv in jobs.items()
  }
  for name, process in processes.items():
    log = process.communicate(timeout=300)[0]
    assert process.returncode == 0, f'{name}:\n{log[-3000:]}'
  return {name: np.load(tmp_path / f'{name}.npz') for name in jobs}


def _largest_difference(a, b) -> float:
  return max(float(np.max(np.abs(a[key] - b[key]))) for key in a.files if key.startswith('w'))


@pytest.mark.slow
def test_two_workers_train_as_one_process_on_the_same_global_batch(tmp_path):
  runs = _run_all(tmp_path)
  assert np.all(np.isfinite(runs['worker0']['loss']))
  # The workers hold one model: all-reduced gradients keep them identical.
  assert _largest_difference(runs['worker0'], runs['worker1']) == 0.0
  # ... the model of the single process with two replicas, up to the order of float sums.
  synced = _largest_difference(runs['worker0'], runs['two_replicas'])
  assert synced < 1e-5, synced
  np.testing.assert_allclose(runs['worker0']['loss'], runs['two_replicas']['loss'], rtol=1e-5)
  # Training on the whole batch without splitting it (what an unsynchronised worker does) ends
  # measurably elsewhere, so the two checks above could fail.
  assert _largest_difference(runs['worker0'], runs['one_replica']) > 100 * max(synced, 1e-6)


if __name__ == '__main__':
  _, out, mode, *rest = sys.argv
  train(mode, out, int(rest[0]) if rest else 0, json.loads(rest[1]) if rest else ())
