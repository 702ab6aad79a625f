"""The guard on the default loss: on the demo data, after a short training, it is far beyond the
all-background predictor and ahead of cross-entropy by a fixed margin.

What it guards is a regression of the default loss or the recipe on one seed and one short run, not
the study's comparison over seeds at convergence (benchmarks/loss_study.py, docs/loss_study.md): the
README's claim that the default beats cross-entropy on the demo set, held to
MARGIN_OVER_CROSS_ENTROPY here. Same model, recipe, seed, data order and steps for both losses; the data goes through the
Transform's own decode functions (`trainer.in_memory`) so no pipeline run is needed; the mean IoU is
the numpy reference's (`iou_reference`). Figures are printed (pytest -s).
"""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from iouseg import demo_data
from trainer import augment, in_memory, task
from trainer.config import TrainerConfig
from transform.config import TransformConfig

from iou_reference import numpy_confusion, per_class_and_mean, predicted_ids

STEPS = 300
SEED = 0
TRANSFORM = TransformConfig(image_size=64, channels=3, num_classes=demo_data.NUM_CLASSES)
# How far the default must be above each reference, in eval mean IoU; over cross-entropy, what the
# README says the default gains on the demo set.
MARGIN_OVER_ALL_BACKGROUND = 0.4
MARGIN_OVER_CROSS_ENTROPY = 0.025

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def demo_arrays(tmp_path_factory):
  root = tmp_path_factory.mktemp('demo')
  demo_data.write_demo_data(str(root))  # the bundled demo set, as `make demo` writes it
  return in_memory.load_train_eval(f'{root}/train/*', f'{root}/eval/*', TRANSFORM)


def _eval_mean_iou(loss: str, demo_arrays) -> float:
  train, evaluation = demo_arrays
  config = TrainerConfig.from_flat(loss=loss, num_classes=TRANSFORM.num_classes, seed=SEED)
  tf_keras.utils.set_random_seed(SEED)
  model = task.compiled_model(config, total_steps=STEPS)
  dataset = augment.augment_dataset(
    tf.data.Dataset.from_tensor_slices(train).shuffle(256, seed=SEED).repeat().batch(16),
    augment.AugmentOptions.from_config(config),
    SEED,
  )
  model.fit(dataset, steps_per_epoch=STEPS, epochs=1, verbose=0)
  predicted = predicted_ids(model.predict(evaluation[0], verbose=0))
  return _mean_iou(evaluation[1], predicted)


def _mean_iou(labels, predicted) -> float:
  """Mean IoU of class ids against one-hot labels (an all-zero row is an ignored pixel)."""
  labels = np.asarray(labels)
  true_ids, valid = labels.argmax(-1), labels.sum(-1) > 0
  return per_class_and_mean(numpy_confusion(true_ids, predicted, valid, TRANSFORM.num_classes))[1]


def test_default_loss_beats_all_background_and_cross_entropy(demo_arrays):
  _, evaluation = demo_arrays
  all_background = _mean_iou(evaluation[1], np.zeros(np.shape(evaluation[1])[:-1], np.int64))
  default_loss = TrainerConfig().losses.loss
  default = _eval_mean_iou(default_loss, demo_arrays)
  cross_entropy = _eval_mean_iou('cross_entropy', demo_arrays)
  print(
    f'\neval mean IoU after {STEPS} steps, seed {SEED}: {default_loss} {default:.4f}, '
    f'cross_entropy {cross_entropy:.4f}, all-background predictor {all_background:.4f}'
  )
  assert default > all_background + MARGIN_OVER_ALL_BACKGROUND
  assert default > cross_entropy + MARGIN_OVER_CROSS_ENTROPY
