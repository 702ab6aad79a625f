"""The default loss (the seed's pure soft IoU) trains on the demo data.

Same model, optimiser, steps and data for both losses; the data goes through the Transform's own
decode functions (`trainer.in_memory`) so no pipeline run is needed. Figures are printed (pytest -s).
"""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from iouseg import demo_data
from trainer import decode, in_memory, iou, task
from trainer.config import TrainerConfig
from transform.config import TransformConfig

STEPS = 300
TRANSFORM = TransformConfig(image_size=64, channels=3, num_classes=demo_data.NUM_CLASSES)


@pytest.fixture(scope='module')
def demo_arrays(tmp_path_factory):
  root = tmp_path_factory.mktemp('demo')
  demo_data.write_demo_data(str(root))  # the bundled demo set, as `make demo` writes it
  return in_memory.load_train_eval(f'{root}/train/*', f'{root}/eval/*', TRANSFORM)


def _eval_mean_iou(loss: str, demo_arrays) -> float:
  train, evaluation = demo_arrays
  tf_keras.utils.set_random_seed(0)
  model = task.compiled_model(TrainerConfig(loss=loss, num_classes=TRANSFORM.num_classes))
  dataset = tf.data.Dataset.from_tensor_slices(train).shuffle(256, seed=0).repeat().batch(16)
  model.fit(dataset, steps_per_epoch=STEPS, epochs=1, verbose=0)
  true_ids, valid = decode.labels_to_class_ids_np(evaluation[1])
  predicted = decode.class_ids_np(model.predict(evaluation[0], verbose=0))
  return iou.mean_iou(iou.confusion_matrix(true_ids, predicted, valid, TRANSFORM.num_classes))


def test_pure_soft_iou_trains_as_well_as_cross_entropy_plus_iou(demo_arrays):
  _, evaluation = demo_arrays
  true_ids, valid = decode.labels_to_class_ids_np(evaluation[1])
  all_background = iou.mean_iou(iou.confusion_matrix(true_ids, np.zeros_like(true_ids), valid,
                                                     TRANSFORM.num_classes))
  soft_iou = _eval_mean_iou('soft_iou', demo_arrays)
  combined = _eval_mean_iou('cross_entropy+soft_iou', demo_arrays)
  print(f'\neval mean IoU after {STEPS} steps: soft_iou {soft_iou:.4f}, '
        f'cross_entropy+soft_iou {combined:.4f}, all-background predictor {all_background:.4f}')
  assert soft_iou > all_background + 0.4
  assert soft_iou > combined - 0.05
