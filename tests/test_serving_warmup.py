"""TF Serving warm-up requests in every pushed version (components.serving_warmup, DedupPusher).

One tiny LocalDagRunner run; the pushed version's `assets.extra/tf_serving_warmup_requests` is read
back as TF Serving reads it (a TFRecord of PredictionLogs) and replayed against the pushed SavedModel
in this process.
"""

import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tfx.types import artifact_utils

from components import dedup_pusher, serving_warmup
from iouseg import cli, run_summary
from transform import data_format

from helpers import recorded_artifacts, run_tiny_pipeline
from iou_reference import numpy_confusion

NAME = 'warmup'

pytestmark = pytest.mark.e2e


@pytest.fixture(scope='module')
def pushed(tiny_demo_data, tmp_path_factory):
  base = tmp_path_factory.mktemp('warmup')
  metadata = run_tiny_pipeline(base, tiny_demo_data, NAME, train_steps=16)
  summary = run_summary.latest_run(metadata, NAME)
  assert summary.pushed and not summary.already_serving
  return {
    'summary': summary,
    'metadata': metadata,
    'version_dir': summary.pushed_destination,
    'data': tiny_demo_data,
  }


def _eval_records(data_root):
  files = sorted(tf.io.gfile.glob(os.path.join(str(data_root), 'eval', '*')))
  return [record.numpy() for record in tf.data.TFRecordDataset(files)]


def test_pushed_version_carries_predict_logs_for_serving_default(pushed):
  path = os.path.join(pushed['version_dir'], 'assets.extra', 'tf_serving_warmup_requests')
  assert path == serving_warmup.warmup_path(pushed['version_dir'])
  logs = serving_warmup.read_warmup_file(path)
  assert len(logs) == serving_warmup.DEFAULT_NUM_REQUESTS
  for log in logs:
    assert log.WhichOneof('log_type') == 'predict_log'
    request = log.predict_log.request
    assert request.model_spec.signature_name == 'serving_default'
    assert (
      request.model_spec.name == 'serving'
    )  # the base directory's name, TF Serving's model name
    assert list(request.inputs) == ['examples']
    examples = tf.make_ndarray(request.inputs['examples'])
    assert examples.shape == (1,)
    # As a client sends it: the image only.
    features = tf.train.Example.FromString(examples[0]).features.feature
    assert list(features) == [data_format.IMAGE_ENCODED]


def test_requests_are_eval_records_images(pushed):
  """The Pusher's `examples` input is the RecordValidator's valid examples; the requests are the
  first records of their eval split, whose images are among the data set's eval images."""
  inputs, _, _ = recorded_artifacts(pushed['metadata'], 'Pusher')
  examples = artifact_utils.get_single_instance(inputs['examples'])
  assert examples.uri.rstrip('/').split('/')[-3] == 'RecordValidator'
  eval_images = {
    tf.train.Example.FromString(r).features.feature[data_format.IMAGE_ENCODED].bytes_list.value[0]
    for r in _eval_records(pushed['data'])
  }
  logs = serving_warmup.read_warmup_file(serving_warmup.warmup_path(pushed['version_dir']))
  sent = [
    tf.train.Example.FromString(tf.make_ndarray(log.predict_log.request.inputs['examples'])[0])
    .features.feature[data_format.IMAGE_ENCODED]
    .bytes_list.value[0]
    for log in logs
  ]
  assert len(set(sent)) == len(sent) and set(sent) <= eval_images


def test_replayed_requests_segment_their_images_as_iouseg_predict_and_the_evaluator_did(
  pushed, tmp_path
):
  """What TF Serving's warm-up gets back, against what does not go through the replay: each image's
  size as PIL decodes it, the mask file `iouseg predict` writes for the same image file, and the
  record's own mask: the replayed pixels, counted by numpy against it, are among the pixels the
  Evaluator counted in its confusion matrix of the pushed model on the eval split."""
  version_dir = pushed['version_dir']
  logs = serving_warmup.read_warmup_file(serving_warmup.warmup_path(version_dir))
  replayed = serving_warmup.replay(version_dir, [log.predict_log.request for log in logs])
  masks = {}
  for record in _eval_records(pushed['data']):
    feature = tf.train.Example.FromString(record).features.feature
    masks[feature[data_format.IMAGE_ENCODED].bytes_list.value[0]] = np.asarray(
      Image.open(io.BytesIO(feature[data_format.MASK_ENCODED].bytes_list.value[0])), np.int64
    )
  images = []
  for k, log in enumerate(logs):
    image = (
      tf.train.Example.FromString(tf.make_ndarray(log.predict_log.request.inputs['examples'])[0])
      .features.feature[data_format.IMAGE_ENCODED]
      .bytes_list.value[0]
    )
    (tmp_path / f'request_{k}.png').write_bytes(image)
    images.append(image)
  assert (
    cli.main(
      [
        'predict',
        '--model',
        version_dir,
        '--output',
        str(tmp_path / 'masks'),
        *[str(tmp_path / f'request_{k}.png') for k in range(len(logs))],
      ]
    )
    == 0
  )
  num_classes = len(pushed['summary'].candidate_metrics['confusion_matrix'])
  counted = np.zeros((num_classes, num_classes), np.int64)
  for k, (image, outputs) in enumerate(zip(images, replayed)):
    width, height = Image.open(io.BytesIO(image)).size
    assert set(outputs) >= {'class_ids', 'probabilities', 'height', 'width'}
    assert (outputs['height'][0], outputs['width'][0]) == (height, width)
    assert outputs['class_ids'].shape[1:] == (height, width)
    class_ids = outputs['class_ids'][0, :height, :width]
    by_predict = np.asarray(Image.open(tmp_path / 'masks' / f'request_{k}.mask.png'))
    np.testing.assert_array_equal(class_ids, by_predict)
    mask = masks[image]
    counted += numpy_confusion(
      mask, class_ids, mask != data_format.DEFAULT_IGNORE_LABEL, num_classes
    )
  evaluated = np.asarray(pushed['summary'].candidate_metrics['confusion_matrix'])
  assert 0 < counted.sum() < evaluated.sum()
  assert (counted <= evaluated).all(), (counted, evaluated)


def test_warmup_is_not_in_the_trainer_model_and_dedup_still_matches(pushed):
  """assets.extra is outside the SavedModel fingerprint: the served version and the Trainer's model
  (which has no warm-up file) are the same model to the de-duplication."""
  _, outputs, _ = recorded_artifacts(pushed['metadata'], 'Trainer')
  model_dir = os.path.join(outputs['model'][0].uri, 'Format-Serving')
  assert not os.path.exists(serving_warmup.warmup_path(model_dir))
  serving = os.path.dirname(pushed['version_dir'])
  assert dedup_pusher.find_existing_version(model_dir, serving) == os.path.basename(
    pushed['version_dir']
  )
  # The Pusher's archive copy is what was served, warm-up file included.
  _, pusher_outputs, _ = recorded_artifacts(pushed['metadata'], 'Pusher')
  assert os.path.exists(serving_warmup.warmup_path(pusher_outputs['pushed_model'][0].uri))


def test_a_request_the_model_cannot_run_is_refused(pushed):
  requests = serving_warmup.predict_requests([b'not a tf.Example'], 'examples')
  with pytest.raises(tf.errors.InvalidArgumentError):
    serving_warmup.check_requests(pushed['version_dir'], requests)
  with pytest.raises(ValueError, match='no warm-up'):
    serving_warmup.check_requests(pushed['version_dir'], [])
