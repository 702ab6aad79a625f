"""The whole pipeline with LocalDagRunner, real Beam, MLMD (SQLite) and TFMA, on a tiny data set.

One pipeline root serves four runs, in order, as a user would make them:
  1. first run (through the CLI): blessed and pushed;
  2. the same run again: the first model is the baseline; nothing new is published;
  3. an impossible threshold: not blessed, nothing pushed, the blessing says why;
  4. a worse candidate (learning rate 1e-12, all but untrained; the config refuses 0): refused by
     the change threshold against the baseline.
"""

import contextlib
import io
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from PIL import Image
from tfx.components.transform import executor as transform_executor
from tfx.types import artifact_utils, standard_artifacts

from iouseg import cli, predict, run_summary
from pipeline import beam_runners
from trainer import data
from transform import data_format, features

from helpers import TINY_CLASSES as CLASSES
from helpers import (
  TINY_MODEL,
  iouseg_run_args,
  recorded_artifacts,
  rerun_executor,
  run_tiny_pipeline,
  tiny_model_flags,
)
from helpers import TINY_SIZE as SIZE
from iou_reference import numpy_confusion, per_class_and_mean, predicted_ids

NAME = 'e2e'
TRAIN_STEPS = 80

pytestmark = pytest.mark.e2e


def _versions(serving_dir):
  return sorted(os.listdir(serving_dir)) if os.path.isdir(serving_dir) else []


def _run_pipeline(base, data_root, min_mean_iou, **trainer_overrides):
  metadata = run_tiny_pipeline(
    base,
    data_root,
    NAME,
    train_steps=TRAIN_STEPS,
    min_mean_iou=min_mean_iou,
    trainer_overrides=trainer_overrides,
  )
  return run_summary.latest_run(metadata, NAME)


@pytest.fixture(scope='module')
def runs(tiny_demo_data, tmp_path_factory):
  base = tmp_path_factory.mktemp('e2e')
  paths = {
    'root': str(base / 'root'),
    'serving': str(base / 'serving'),
    'metadata': str(base / 'metadata.sqlite'),
  }
  results = {'paths': paths}
  # Run 1 goes through the command line a user types.
  argv = iouseg_run_args(base, tiny_demo_data, NAME, TRAIN_STEPS, min_mean_iou=0.1)
  argv += tiny_model_flags()
  buffer = io.StringIO()
  with contextlib.redirect_stdout(buffer):
    assert cli.main(argv) == 0
  results['first'] = run_summary.latest_run(paths['metadata'], NAME)
  results['first_versions'] = _versions(paths['serving'])
  results['cli_output'] = buffer.getvalue()
  results['second'] = _run_pipeline(base, tiny_demo_data, 0.1)
  results['second_versions'] = _versions(paths['serving'])
  results['impossible'] = _run_pipeline(base, tiny_demo_data, 1.01)
  results['impossible_versions'] = _versions(paths['serving'])
  results['worse'] = _run_pipeline(base, tiny_demo_data, 0.0, learning_rate=1e-12)
  results['worse_versions'] = _versions(paths['serving'])
  return results


def test_first_run_is_blessed_and_pushed(runs):
  first = runs['first']
  assert all(state == 'executed' for state in first.component_states.values()), first
  assert first.blessed and first.pushed and not first.baseline_metrics
  assert len(runs['first_versions']) == 1
  assert first.pushed_destination == os.path.join(
    runs['paths']['serving'], runs['first_versions'][0]
  )
  assert set(first.candidate_metrics) >= {'mean_iou', 'pixel_accuracy'} | {
    f'iou/class_{k}' for k in range(CLASSES)
  }
  # What `iouseg run` printed is the summary a user reads.
  out = runs['cli_output']
  assert 'Blessed: yes' in out and f'Pushed to: {first.pushed_destination}' in out
  assert 'Eval mean IoU:' in out and 'Transform' in out and 'executed' in out


def test_pushed_model_segments_a_png_at_its_own_size(runs, tmp_path):
  model_dir = predict.resolve_saved_model(runs['paths']['serving'])
  signature = tf.saved_model.load(model_dir).signatures['serving_default']
  rng = np.random.default_rng(0)
  for height, width in ((48, 48), (37, 61)):
    png = data_format.encode_png(rng.integers(0, 255, (height, width, 3)))
    class_ids = predict.predict_bytes(signature, png)
    assert class_ids.shape == (height, width)
    assert class_ids.min() >= 0 and class_ids.max() < CLASSES
  # The same through the CLI: a mask file the size of the input image.
  image_path = tmp_path / 'photo.png'
  image_path.write_bytes(data_format.encode_png(rng.integers(0, 255, (30, 50, 3))))
  assert (
    cli.main(
      [
        'predict',
        '--model',
        runs['paths']['serving'],
        '--output',
        str(tmp_path / 'out'),
        str(image_path),
      ]
    )
    == 0
  )
  assert Image.open(tmp_path / 'out' / 'photo.mask.png').size == (50, 30)


def test_tfma_mean_iou_equals_numpy_on_the_models_own_predictions(runs, tiny_demo_data):
  """The blessing's mean IoU is scored at each image's own size (48 px here, the model's is 32):
  `serving_default`'s class ids against the mask as PIL decodes it. The model-resolution figure is
  `model_resolution`'s prediction against the mask resized as Transform resizes it. The reference
  (decoding rule, confusion matrix, IoU) is `iou_reference`'s numpy, not the project's `trainer.iou`
  and `trainer.decode` that the TFMA metric itself uses."""
  model = tf.saved_model.load(runs['first'].pushed_destination)
  spec = {data_format.MASK_ENCODED: tf.io.FixedLenFeature([], tf.string)}
  serialized = list(tf.data.TFRecordDataset(tf.io.gfile.glob(f'{tiny_demo_data}/eval/*')))
  served = model.signatures['serving_default'](examples=tf.stack(serialized))
  probabilities = model.signatures['model_resolution'](examples=tf.stack(serialized))[
    'probabilities'
  ].numpy()
  native, at_model = np.zeros((CLASSES, CLASSES), np.int64), np.zeros((CLASSES, CLASSES), np.int64)
  for k, record in enumerate(serialized):
    mask = np.asarray(
      Image.open(
        io.BytesIO(tf.io.parse_single_example(record, spec)[data_format.MASK_ENCODED].numpy())
      ),
      np.int64,
    )
    height, width = mask.shape
    assert (served['height'][k], served['width'][k]) == (height, width) and height != SIZE
    pred = served['class_ids'][k, :height, :width].numpy()
    native += numpy_confusion(mask, pred, mask != data_format.DEFAULT_IGNORE_LABEL, CLASSES)
    small = tf.image.resize(mask[..., None], [SIZE, SIZE], method='nearest')[..., 0].numpy()
    at_model += numpy_confusion(
      small, predicted_ids(probabilities[k]), small != data_format.DEFAULT_IGNORE_LABEL, CLASSES
    )
  metrics = runs['first'].candidate_metrics
  np.testing.assert_array_equal(metrics['confusion_matrix'], native)
  per_class, mean = per_class_and_mean(native)
  assert metrics['mean_iou'] == pytest.approx(mean, abs=1e-6)
  for k, value in enumerate(per_class):
    assert metrics[f'iou/class_{k}'] == pytest.approx(value, abs=1e-6, nan_ok=True)
  assert metrics['mean_iou_model_resolution'] == pytest.approx(
    per_class_and_mean(at_model)[1], abs=1e-6
  )


def _written_by_transform(examples_artifact, split, tf_transform_output) -> dict:
  """Transform's materialised rows of a split, keyed by their label and weight bytes (exact)."""
  files = tf.io.gfile.glob(
    os.path.join(artifact_utils.get_split_uri([examples_artifact], split), '*')
  )
  spec = tf_transform_output.transformed_feature_spec()
  rows = {}
  for record in tf.data.TFRecordDataset(files, compression_type='GZIP'):
    row = {key: value.numpy() for key, value in tf.io.parse_single_example(record, spec).items()}
    rows[row[features.LABEL].tobytes() + row[features.WEIGHT].tobytes()] = row
  return rows


def test_training_feed_is_what_transform_itself_writes(runs, tmp_path):
  """Transform writes no transformed copy (materialize=False): the Trainer maps the valid raw
  examples through the transform graph. Over three epochs, with its in-memory cache or re-reading
  the files, it must hand the model exactly the rows Transform writes when asked to materialise."""
  metadata = runs['paths']['metadata']
  inputs, _, _ = recorded_artifacts(metadata, 'Transform')
  materialised = rerun_executor(
    metadata,
    'Transform',
    transform_executor.Executor,
    beam_runners.beam_args('in_memory'),
    str(tmp_path),
    extra_outputs={'transformed_examples': standard_artifacts.Examples()},
  )
  tf_transform_output = tft.TFTransformOutput(materialised['transform_graph'][0].uri)
  written = _written_by_transform(
    materialised['transformed_examples'][0], 'train', tf_transform_output
  )
  pattern = [os.path.join(artifact_utils.get_split_uri(inputs['examples'], 'train'), '*')]
  batches = 3 * 16 // TINY_MODEL['batch_size']  # three epochs of the 16 train records

  def feed(cache_mib):
    dataset = data.make_dataset(
      pattern,
      tf_transform_output,
      TINY_MODEL['batch_size'],
      seed=0,
      shuffle=False,
      cache_mib=cache_mib,
    )
    return [np.concatenate([batch[k].numpy() for batch in dataset.take(batches)]) for k in range(3)]

  cached, read = feed(cache_mib=64), feed(cache_mib=0)
  assert cached[0].shape == (48, SIZE, SIZE, 3) and cached[1].shape == (48, SIZE, SIZE, CLASSES)
  for from_cache, from_files in zip(cached, read):
    np.testing.assert_array_equal(from_cache, from_files)
  images, labels, weights = cached
  assert len(written) == 16
  for image, label, weight in zip(images, labels, weights):
    row = written[label.tobytes() + weight.tobytes()]  # every fed row is one Transform wrote
    np.testing.assert_allclose(image, row[features.IMAGE], atol=1e-6)


def test_second_run_uses_first_model_as_baseline_and_publishes_nothing_new(runs):
  second = runs['second']
  assert second.component_states['Trainer'] == 'cached'
  assert second.component_states['Evaluator'] == 'executed'  # the baseline changed
  assert second.baseline_metrics['mean_iou'] == pytest.approx(second.candidate_metrics['mean_iou'])
  assert second.blessed and second.pushed and second.already_serving
  assert second.pushed_destination == runs['first'].pushed_destination
  assert runs['second_versions'] == runs['first_versions']


def test_impossible_threshold_blocks_the_push_and_says_why(runs):
  impossible = runs['impossible']
  assert impossible.blessed is False and not impossible.pushed
  assert any(f.startswith('mean_iou') and '1.01' in f for f in impossible.failures), (
    impossible.failures
  )
  assert runs['impossible_versions'] == runs['first_versions']


def test_worse_candidate_fails_the_change_threshold(runs):
  worse = runs['worse']
  assert worse.component_states['Trainer'] == 'executed'
  assert worse.candidate_metrics['mean_iou'] < worse.baseline_metrics['mean_iou']
  assert worse.blessed is False and not worse.pushed
  assert any('change' in f.lower() or 'baseline' in f.lower() for f in worse.failures), (
    worse.failures
  )
  assert runs['worse_versions'] == runs['first_versions']
