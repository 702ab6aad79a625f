"""The Evaluator's IoU metrics, blessing rules and slices (components/iou_metric.py,
pipeline/eval_config.py), checked against numpy and tf_keras on hand-made masks.

The combiner is fed StandardMetricInputs directly, split and merged in arbitrary ways. Then real TFMA
(`tfma.run_model_analysis`, Beam's DirectRunner) evaluates the project's EvalConfig on records that
carry their labels and predictions as features (TFMA's model-agnostic mode: no model to train), once
in memory and once with 2 worker processes, and both must give the same numbers as numpy.
The data holds a class that never occurs (IoU absent, not 0) and an image that is all ignore label.
"""
import argparse
import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
import tf_keras
from apache_beam.options.pipeline_options import PipelineOptions
from bs4 import BeautifulSoup
from hypothesis import given, settings, strategies as st
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_model_analysis.metrics import metric_specs, metric_types

from iouseg import run_summary
from iouseg.report import page
from pipeline import eval_config, flags
from trainer import losses

CLASSES = ['background', 'disc', 'square', 'never']  # 'never': in no label and no prediction
ABSENT = 3
SIZE, IMAGES = 8, 12
SOURCE = 'image/source'


def make_data(seed: int = 0):
  """(one-hot labels, probabilities, class ids, valid masks, sources) of IMAGES images.
  Image 0 is all ignore; about 10 % of the other pixels are ignored; class ABSENT never occurs."""
  rng = np.random.default_rng(seed)
  ids = rng.choice(ABSENT, size=(IMAGES, SIZE, SIZE), p=[0.6, 0.3, 0.1])
  ids[1:3][ids[1:3] == 1] = 0  # images without a disc
  ids[2:5][ids[2:5] == 2] = 0  # and without a square, so no slice is only the all-ignore image
  valid = rng.uniform(size=ids.shape) > 0.1
  valid[0] = False
  labels = np.eye(len(CLASSES))[ids] * valid[..., None]
  probabilities = 0.4 * np.eye(len(CLASSES))[ids] + 0.6 * rng.uniform(size=labels.shape)
  probabilities[..., ABSENT] = 0.0
  probabilities = probabilities.astype(np.float32).astype(np.float64)  # what a tf.Example holds
  sources = np.where(np.arange(IMAGES) % 3 == 0, 'scanner', 'phone')
  return labels, probabilities, ids, valid, sources


def predicted_ids(probabilities):
  """The decoding rule, written out again: best foreground class if >= 0.5, else background."""
  best = probabilities[..., 1:].argmax(-1) + 1
  return np.where(probabilities[..., 1:].max(-1) >= 0.5, best, 0)


def numpy_confusion(ids, predictions, valid):
  matrix = np.zeros((len(CLASSES),) * 2, dtype=np.int64)
  np.add.at(matrix, (ids[valid], predictions[valid]), 1)
  return matrix


def expected_metrics(labels, probabilities, ids, valid):
  """Every metric by its definition, in numpy, for comparison with what TFMA reports."""
  matrix = numpy_confusion(ids, predicted_ids(probabilities), valid)
  tp = np.diag(matrix).astype(float)
  union = matrix.sum(0) + matrix.sum(1) - tp
  per_class = [tp[k] / union[k] if union[k] else math.nan for k in range(len(CLASSES))]
  present = [v for v in per_class if not math.isnan(v)]
  truth = matrix.sum(1)
  w = valid[..., None]
  i = (w * probabilities * labels).sum()
  u = (w * (probabilities + labels - probabilities * labels)).sum()
  expected = {
      'mean_iou': np.mean(present) if present else math.nan,
      'pixel_accuracy': tp.sum() / matrix.sum() if matrix.sum() else math.nan,
      'frequency_weighted_iou': (sum(truth[k] * per_class[k] for k in range(len(CLASSES))
                                     if truth[k]) / truth.sum()) if truth.sum() else math.nan,
      'soft_iou_loss': 1 - (i + 1) / (u + 1),
      'confusion_matrix': matrix}
  expected.update({f'iou/{name}': per_class[k] for k, name in enumerate(CLASSES)})
  return expected


def assert_metrics_equal(actual: dict, expected: dict):
  assert set(actual) == set(expected)
  for name, value in expected.items():
    if name == 'confusion_matrix':
      np.testing.assert_array_equal(actual[name], value)
    elif math.isnan(value):
      assert math.isnan(actual[name]), (name, actual[name])
    else:
      assert actual[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


# --- the combiner on its own -------------------------------------------------------------------

def _computations():
  config = eval_config.make_eval_config(len(CLASSES), 0.5, CLASSES)
  metrics = [metric_specs.metric_instance(m) for spec in config.metrics_specs
             for m in spec.metrics]
  computations = [c for metric in metrics for c in metric.computations(eval_config=config)]
  combiners = {c for c in computations if isinstance(c, metric_types.MetricComputation)}
  assert len(combiners) == 1, 'every IoU metric must share the one combiner'
  derived = [c for c in computations if isinstance(c, metric_types.DerivedMetricComputation)]
  return combiners.pop().combiner, derived


def run_combiner(labels, probabilities, groups):
  """Accumulates each group of images separately, merges, and derives the metrics, as Beam would."""
  combiner, derived = _computations()
  accumulators = []
  for group in groups:
    accumulator = combiner.create_accumulator()
    for k in group:
      accumulator = combiner.add_input(accumulator, metric_types.StandardMetricInputs(
          labels=labels[k], predictions=probabilities[k], example_weights=np.array([1.0])))
    accumulators.append(accumulator)
  outputs = combiner.extract_output(combiner.merge_accumulators(accumulators))
  for computation in derived:
    outputs.update(computation.result(outputs))
  return {key.name: value for key, value in outputs.items() if not key.name.startswith('_')}


def test_combiner_matches_numpy_keras_mean_iou_and_the_training_loss():
  labels, probabilities, ids, valid, _ = make_data()
  result = run_combiner(labels, probabilities, [range(IMAGES)])
  assert_metrics_equal(result, expected_metrics(labels, probabilities, ids, valid))

  keras_iou = tf_keras.metrics.MeanIoU(num_classes=len(CLASSES))
  keras_iou.update_state(ids, predicted_ids(probabilities), sample_weight=valid)
  np.testing.assert_array_equal(keras_iou.total_cm.numpy(), result['confusion_matrix'])
  assert result['mean_iou'] == pytest.approx(float(keras_iou.result()), abs=1e-6)

  # The absent class is NaN, flagged as absent, and left out of the mean instead of dragging it down.
  assert math.isnan(result['iou/never'])
  assert run_summary.format_value('iou/never', result['iou/never']) == 'absent'
  assert result['mean_iou'] == pytest.approx(np.mean([result[f'iou/{c}'] for c in CLASSES[:3]]))

  loss = losses.soft_iou_loss(tf.constant(labels, tf.float32), tf.constant(probabilities, tf.float32),
                              tf.constant(valid, tf.float32))
  assert result['soft_iou_loss'] == pytest.approx(float(loss), rel=1e-5)


def test_all_ignore_images_count_for_nothing():
  labels, probabilities, *_ = make_data()
  only_ignore = run_combiner(labels, probabilities, [[0]])
  assert not only_ignore['confusion_matrix'].any()
  assert all(math.isnan(only_ignore[name]) for name in
             ['mean_iou', 'pixel_accuracy', 'frequency_weighted_iou'] + [f'iou/{c}' for c in CLASSES])
  assert only_ignore['soft_iou_loss'] == 0.0  # the loss's epsilon: 1 - 1/1
  with_it = run_combiner(labels, probabilities, [range(IMAGES)])
  without_it = run_combiner(labels, probabilities, [range(1, IMAGES)])
  assert_metrics_equal(with_it, without_it)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=IMAGES, max_size=IMAGES))
def test_any_split_into_merged_accumulators_gives_the_same_numbers(worker_of_image):
  labels, probabilities, ids, valid, _ = make_data()
  groups = [[k for k in range(IMAGES) if worker_of_image[k] == w] for w in range(4)]
  assert_metrics_equal(run_combiner(labels, probabilities, groups),
                       expected_metrics(labels, probabilities, ids, valid))


# --- the configuration --------------------------------------------------------------------------

def test_flags_become_class_rules_and_slices():
  parser = argparse.ArgumentParser()
  flags.add_pipeline_arguments(parser)
  args = parser.parse_args([
      '--data-root', 'd', '--pipeline-root', 'r', '--serving-dir', 's', '--class-names',
      ','.join(CLASSES), '--class-min-iou', 'background=0.9,disc=0.5', '--max-class-drop', '0.05',
      '--slice-by', SOURCE, '--slice-by', 'image/format,image/source', '--class-presence-slices'])
  options = flags.create_pipeline_kwargs(args)['eval_options']
  assert options == eval_config.EvalOptions({'background': 0.9, 'disc': 0.5}, 0.05,
                                            [(SOURCE,), ('image/format', SOURCE)], True)
  config = eval_config.make_eval_config(len(CLASSES), 0.5, CLASSES, options)
  # The mean-IoU rules stay the first spec's only metric (kubeflow.parameters edits it there).
  mean_iou, = config.metrics_specs[0].metrics
  assert mean_iou.threshold.value_threshold.lower_bound.value == 0.5
  per_class = {m.config: m for m in config.metrics_specs[1].metrics}
  assert len(per_class) == len(CLASSES)
  disc = next(m for c, m in per_class.items() if '"disc"' in c)
  rule, = disc.per_slice_thresholds
  assert list(rule.slicing_specs) == [tfma.SlicingSpec()]  # the whole split only
  assert rule.threshold.value_threshold.lower_bound.value == 0.5
  assert rule.threshold.change_threshold.absolute.value == -0.05
  assert [s.feature_keys for s in config.slicing_specs[1:3]] == [[SOURCE], ['image/format', SOURCE]]
  assert len([s for s in config.slicing_specs if s.slice_keys_sql]) == len(CLASSES) - 1
  with pytest.raises(ValueError, match='unknown classes'):
    eval_config.make_eval_config(len(CLASSES), 0.5, CLASSES, eval_config.EvalOptions({'cat': 0.1}))
  with pytest.raises(SystemExit):
    parser.parse_args(['--data-root', 'd', '--pipeline-root', 'r', '--serving-dir', 's',
                       '--class-min-iou', 'disc:0.5'])


# --- real TFMA, one worker and two --------------------------------------------------------------

def _write_records(path, labels, probabilities, sources):
  with tf.io.TFRecordWriter(path) as writer:
    for label, probability, source in zip(labels, probabilities, sources):
      writer.write(tf.train.Example(features=tf.train.Features(feature={
          'label': tf.train.Feature(float_list=tf.train.FloatList(value=label.ravel())),
          'probabilities': tf.train.Feature(float_list=tf.train.FloatList(value=probability.ravel())),
          SOURCE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[source.encode()])),
      })).SerializeToString())


def _schema():
  """Fixed shapes, so TFMA hands each example's label and prediction as [H, W, C] arrays."""
  schema = schema_pb2.Schema()
  for name, kind, shape in (('label', schema_pb2.FLOAT, (SIZE, SIZE, len(CLASSES))),
                            ('probabilities', schema_pb2.FLOAT, (SIZE, SIZE, len(CLASSES))),
                            (SOURCE, schema_pb2.BYTES, (1,))):
    feature = schema.feature.add(name=name, type=kind)
    feature.presence.min_fraction = 1.0
    for size in shape:
      feature.shape.dim.add(size=size)
  return schema


def _model_agnostic_config():
  """The project's EvalConfig, with the predictions read from the records instead of a model.
  Without a model there is no baseline: the change rule is left out, as TFMA does on a first run."""
  config = eval_config.make_eval_config(
      len(CLASSES), 0.1, CLASSES,
      eval_config.EvalOptions(class_min_iou={'square': 0.99, 'never': 0.1},
                              slice_features=[(SOURCE,)], class_presence_slices=True))
  config.model_specs[0].CopyFrom(tfma.ModelSpec(label_key='label', prediction_key='probabilities'))
  config.metrics_specs[0].metrics[0].threshold.ClearField('change_threshold')
  return config


@pytest.fixture(scope='module')
def tfma_outputs(tmp_path_factory):
  """{'in_memory' | 'two_workers': output path} of the same evaluation; the data in 3 files, so
  the workers have something to share."""
  base = tmp_path_factory.mktemp('tfma')
  labels, probabilities, _, _, sources = make_data()
  for shard in range(3):
    _write_records(str(base / f'data-{shard}.tfrecord'), labels[shard::3], probabilities[shard::3],
                   sources[shard::3])
  outputs = {}
  for mode, beam_args in (('in_memory', ['--direct_running_mode=in_memory']),
                          ('two_workers', ['--direct_running_mode=multi_processing',
                                           '--direct_num_workers=2'])):
    outputs[mode] = str(base / mode)
    tfma.run_model_analysis(eval_config=_model_agnostic_config(),
                            data_location=str(base / 'data-*.tfrecord'), schema=_schema(),
                            output_path=outputs[mode], pipeline_options=PipelineOptions(beam_args))
  return outputs


def _expected_slices():
  """slice name -> numpy metrics of the images in it: the project's slices, by hand."""
  labels, probabilities, ids, valid, sources = make_data()
  members = {run_summary.OVERALL: np.ones(IMAGES, bool)}
  members.update({f'{SOURCE}={s}': sources == s for s in set(sources)})
  for k, name in enumerate(CLASSES[1:], start=1):
    has = (labels[..., k] > 0).any(axis=(1, 2))
    members[f'label_has_{name}=yes'] = has
    members[f'label_has_{name}=no'] = ~has
  return {name: expected_metrics(labels[m], probabilities[m], ids[m], valid[m])
          for name, m in members.items() if m.any()}


def test_tfma_gives_numpy_numbers_on_every_slice_with_one_worker_and_with_two(tfma_outputs):
  expected = _expected_slices()
  assert 'label_has_never=no' in expected and 'label_has_never=yes' not in expected
  for mode, path in tfma_outputs.items():
    slices = run_summary.sliced_metrics(path)
    assert set(slices) == set(expected), mode
    for name, metrics in expected.items():
      assert_metrics_equal(slices[name][run_summary.CANDIDATE], metrics)
  assert run_summary.class_names(tfma_outputs['in_memory']) == CLASSES


def test_class_floors_fail_the_validation_naming_class_and_values(tfma_outputs):
  path = tfma_outputs['two_workers']
  assert not tfma.load_validation_result(path).validation_ok
  square = _expected_slices()[run_summary.OVERALL]['iou/square']
  assert sorted(run_summary.validation_failures(path)) == [
      'iou/never = absent: required >= 0.1',
      f'iou/square = {square:.4f}: required >= 0.99']


def test_summary_and_report_show_the_absent_class_as_absent(tfma_outputs):
  path = tfma_outputs['in_memory']
  slices = run_summary.sliced_metrics(path)
  summary = run_summary.RunSummary(
      'r', {}, slices[run_summary.OVERALL][run_summary.CANDIDATE], {}, False,
      run_summary.validation_failures(path), False, None, False,
      class_names=run_summary.class_names(path), slices=slices, evaluation_uri=path)
  assert 'never                IoU absent (in neither labels nor predictions)' in (
      run_summary.format_summary(summary))
  soup = BeautifulSoup(page.render(summary, [], 'p', 10), 'html.parser')
  cell = soup.select_one('#class-iou td[data-metric="iou/never"]')
  assert cell.get_text() == 'absent' and cell['data-value'] == 'nan'
  assert 'never' in soup.select_one('#absent').get_text()
  assert soup.select_one(f'#class-iou-chart [id="bar-candidate-{ABSENT}"]') is not None
  assert 'absent' in soup.select_one('#class-iou-chart').get_text()
