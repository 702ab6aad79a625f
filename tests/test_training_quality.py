"""The guard on the default loss: on the demo data it trains far beyond the all-background predictor
and is not worse than cross-entropy by more than the loss study measured between seeds.

Same model, recipe, seed, data order and steps for both losses; the data goes through the
Transform's own decode functions (`trainer.in_memory`) so no pipeline run is needed. The tolerance is
read from the committed study (`benchmarks/results/loss_study.json`, docs/loss_study.md): the
half-range over seeds of cross-entropy's eval mean IoU on the demo set. Figures are printed
(pytest -s).
"""
import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from iouseg import demo_data
from trainer import augment, decode, in_memory, iou, task
from trainer.config import TrainerConfig
from transform.config import TransformConfig

STEPS = 300
SEED = 0
TRANSFORM = TransformConfig(image_size=64, channels=3, num_classes=demo_data.NUM_CLASSES)
STUDY = pathlib.Path(__file__).resolve().parents[1] / 'benchmarks' / 'results' / 'loss_study.json'


@pytest.fixture(scope='module')
def demo_arrays(tmp_path_factory):
  root = tmp_path_factory.mktemp('demo')
  demo_data.write_demo_data(str(root))  # the bundled demo set, as `make demo` writes it
  return in_memory.load_train_eval(f'{root}/train/*', f'{root}/eval/*', TRANSFORM)


def _eval_mean_iou(loss: str, demo_arrays) -> float:
  train, evaluation = demo_arrays
  config = TrainerConfig(loss=loss, num_classes=TRANSFORM.num_classes, seed=SEED)
  tf_keras.utils.set_random_seed(SEED)
  model = task.compiled_model(config, total_steps=STEPS)
  dataset = augment.augment_dataset(
      tf.data.Dataset.from_tensor_slices(train).shuffle(256, seed=SEED).repeat().batch(16),
      augment.AugmentOptions.from_config(config), SEED)
  model.fit(dataset, steps_per_epoch=STEPS, epochs=1, verbose=0)
  true_ids, valid = decode.labels_to_class_ids_np(evaluation[1])
  predicted = decode.class_ids_np(model.predict(evaluation[0], verbose=0))
  return iou.mean_iou(iou.confusion_matrix(true_ids, predicted, valid, TRANSFORM.num_classes))


def _study_spread_of_cross_entropy() -> float:
  demo = next(r for r in json.loads(STUDY.read_text())['results'] if r['dataset'] == 'demo')
  values = [run['mean_iou'] for run in demo['runs'] if run['loss'] == 'cross_entropy']
  assert len(values) >= 3, 'the study ran cross-entropy on fewer than 3 seeds'
  return (max(values) - min(values)) / 2


def test_default_loss_beats_all_background_and_keeps_up_with_cross_entropy(demo_arrays):
  _, evaluation = demo_arrays
  true_ids, valid = decode.labels_to_class_ids_np(evaluation[1])
  all_background = iou.mean_iou(iou.confusion_matrix(true_ids, np.zeros_like(true_ids), valid,
                                                     TRANSFORM.num_classes))
  default_loss = TrainerConfig().loss
  default = _eval_mean_iou(default_loss, demo_arrays)
  cross_entropy = _eval_mean_iou('cross_entropy', demo_arrays)
  spread = _study_spread_of_cross_entropy()
  print(f'\neval mean IoU after {STEPS} steps, seed {SEED}: {default_loss} {default:.4f}, '
        f'cross_entropy {cross_entropy:.4f}, all-background predictor {all_background:.4f}; '
        f'the study\'s cross-entropy spread {spread:.4f}')
  assert default > all_background + 0.4
  assert default >= cross_entropy - spread
