"""`--distribution multi_worker`: two local worker processes train the project's model together.

Each worker is this file run as a script with its own TF_CONFIG (as Kubeflow's TFJob or Vertex AI
set it); gradients are all-reduced, so both end with identical weights.
"""
import json
import os
import socket
import subprocess
import sys

import numpy as np

STEPS = 3


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def worker(index: int, ports, out_path: str) -> None:
  """Trains STEPS steps under MultiWorkerMirroredStrategy; writes its final weights."""
  os.environ['TF_CONFIG'] = json.dumps({
      'cluster': {'worker': [f'127.0.0.1:{port}' for port in ports]},
      'task': {'type': 'worker', 'index': index}})
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tf_keras  # pylint: disable=g-import-not-at-top
  from trainer import distribution, task  # pylint: disable=g-import-not-at-top
  from trainer.config import TrainerConfig  # pylint: disable=g-import-not-at-top
  config = TrainerConfig(image_size=16, base_filters=4, depth=1, batch_size=4,
                         distribution='multi_worker')
  strategy = distribution.get_strategy(config.distribution)
  assert strategy.num_replicas_in_sync == 2
  rng = np.random.default_rng(0)  # the same data on both workers; each reads its own shard
  images = rng.normal(size=(16, 16, 16, 3)).astype(np.float32)
  labels = np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(16, 16, 16))]
  weights = np.ones((16, 16, 16), np.float32)
  dataset = tf.data.Dataset.from_tensor_slices((images, labels, weights)).repeat().batch(4)
  with strategy.scope():
    tf_keras.utils.set_random_seed(0)
    model = task.compiled_model(config)
  history = model.fit(dataset, steps_per_epoch=STEPS, epochs=1, verbose=0)
  np.savez(out_path, loss=history.history['loss'],
           **{f'w{i}': w for i, w in enumerate(model.get_weights())})


def test_two_workers_train_in_sync(tmp_path):
  ports = [_free_port(), _free_port()]
  env = {**os.environ, 'TF_USE_LEGACY_KERAS': '1', 'TF_CPP_MIN_LOG_LEVEL': '2',
         'PYTHONPATH': os.pathsep.join([os.path.dirname(os.path.dirname(__file__)),
                                        os.environ.get('PYTHONPATH', '')])}
  outs = [str(tmp_path / f'worker{i}.npz') for i in range(2)]
  processes = [subprocess.Popen([sys.executable, __file__, str(i), json.dumps(ports), outs[i]],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for i in range(2)]
  logs = [p.communicate(timeout=300)[0] for p in processes]
  for process, log in zip(processes, logs):
    assert process.returncode == 0, log[-3000:]
  first, second = (np.load(path) for path in outs)
  assert np.all(np.isfinite(first['loss']))
  for key in first.files:
    if key.startswith('w'):
      np.testing.assert_array_equal(first[key], second[key], err_msg=key)


if __name__ == '__main__':
  worker(int(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3])
