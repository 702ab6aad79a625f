"""The Evaluator's IoU metrics, blessing rules and slices (components/iou_metric.py,
pipeline/eval_config.py) and the model's evaluation signatures (trainer/export.py), checked against
numpy and tf_keras.

1. The combiner is fed per-example sums (what `evaluation_sums` returns) of hand-made masks directly,
   split and merged in arbitrary ways.
2. Real TFMA (`tfma.run_model_analysis`, Beam's DirectRunner) evaluates the project's EvalConfig on
   records that carry those per-example sums as features (TFMA's model-agnostic mode: no model),
   once in memory and once with 2 worker processes; both must give the same numbers as numpy.
   The data holds a class that never occurs (IoU absent, not 0) and an image that is all ignore label.
Real TFMA on a trained model, images of mixed sizes: tests/test_evaluation_native.py.
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
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_model_analysis.metrics import metric_specs, metric_types

from iouseg import run_summary
from iouseg.report import page
from pipeline import eval_config, flags
from trainer import export, losses
from trainer import model as model_lib
from transform import data_format

from iou_reference import (
  SUM_OUTPUTS,
  assert_metrics_equal,
  numpy_confusion,
  predicted_ids,
  soft_sums,
  split_metrics,
)

CLASSES = ['background', 'disc', 'square', 'never']  # 'never': in no label and no prediction
ABSENT = 3
SIZE, IMAGES = 8, 12  # the model's resolution, and the number of images
# Each image's own size (rows, columns): mixed sizes and aspect ratios.
NATIVE_SIZES = [(8, 12), (10, 6), (9, 9), (7, 13)]
SOURCE = 'image/source'
IGNORE = data_format.DEFAULT_IGNORE_LABEL


def _random_ids(rng, shape):
  return rng.choice(ABSENT, size=shape, p=[0.6, 0.3, 0.1])


def make_data(seed: int = 0):
  """IMAGES images, each at its own size (`native_*`, lists of arrays of mixed sizes) and at the
  model's resolution (one-hot `labels`, `probabilities`, `ids`, `valid`, all [IMAGES, SIZE, SIZE,
  ...]). Image 0 is all ignore; about 10 % of the other pixels are ignored; class ABSENT never occurs;
  images 1-2 hold no disc and 2-4 no square (at their own size, which the presence slices read)."""
  rng = np.random.default_rng(seed)
  ids = _random_ids(rng, (IMAGES, SIZE, SIZE))
  valid = rng.uniform(size=ids.shape) > 0.1
  valid[0] = False
  labels = np.eye(len(CLASSES))[ids] * valid[..., None]
  probabilities = 0.4 * np.eye(len(CLASSES))[ids] + 0.6 * rng.uniform(size=labels.shape)
  probabilities[..., ABSENT] = 0.0
  probabilities = probabilities.astype(np.float32).astype(np.float64)  # what the model computes
  native_ids, native_pred, native_valid = [], [], []
  for k in range(IMAGES):
    shape = NATIVE_SIZES[k % len(NATIVE_SIZES)]
    true = _random_ids(rng, shape)
    if k in (1, 2):
      true[true == 1] = 0
    if k in (2, 3, 4):
      true[true == 2] = 0
    # A prediction right on about 70 % of the pixels.
    native_ids.append(true)
    native_pred.append(np.where(rng.uniform(size=shape) < 0.7, true, _random_ids(rng, shape)))
    native_valid.append((rng.uniform(size=shape) > 0.1) & (k != 0))
  sources = np.where(np.arange(IMAGES) % 3 == 0, 'scanner', 'phone')
  return dict(
    labels=labels,
    probabilities=probabilities,
    ids=ids,
    valid=valid,
    sources=sources,
    native_ids=native_ids,
    native_pred=native_pred,
    native_valid=native_valid,
  )


def example_outputs(d, k) -> dict:
  """Image k's outputs of the `evaluation_sums` signature, computed in numpy."""
  intersection, union = soft_sums(d['labels'][k], d['probabilities'][k], d['valid'][k])
  return {
    export.CONFUSION_MATRIX: numpy_confusion(
      d['native_ids'][k], d['native_pred'][k], d['native_valid'][k], len(CLASSES)
    ),
    export.CONFUSION_MATRIX_MODEL_RESOLUTION: numpy_confusion(
      d['ids'][k], predicted_ids(d['probabilities'][k]), d['valid'][k], len(CLASSES)
    ),
    export.SOFT_IOU_INTERSECTION: intersection,
    export.SOFT_IOU_UNION: union,
  }


def expected_metrics(d, members=None):
  """The metrics of the images in `members` (bool [IMAGES]; all by default), from all their pixels
  at once."""
  members = np.ones(IMAGES, bool) if members is None else members
  chosen = np.flatnonzero(members)
  native = [
    np.concatenate([d[key][k].ravel() for k in chosen])
    for key in ('native_ids', 'native_pred', 'native_valid')
  ]
  model = [d[key][members] for key in ('ids', 'labels', 'probabilities', 'valid')]
  return split_metrics([(native, model)], CLASSES)


# --- the combiner on its own# --- the combiner on its own -------------------------------------------------------------------


def _computations():
  config = eval_config.make_eval_config(len(CLASSES), 0.5, CLASSES)
  metrics = [metric_specs.metric_instance(m) for spec in config.metrics_specs for m in spec.metrics]
  computations = [c for metric in metrics for c in metric.computations(eval_config=config)]
  combiners = {c for c in computations if isinstance(c, metric_types.MetricComputation)}
  assert len(combiners) == 1, 'every IoU metric must share the one combiner'
  derived = [c for c in computations if isinstance(c, metric_types.DerivedMetricComputation)]
  return combiners.pop().combiner, derived


def run_combiner(d, groups):
  """Accumulates each group of images separately, merges, and derives the metrics, as Beam would."""
  combiner, derived = _computations()
  accumulators = []
  for group in groups:
    accumulator = combiner.create_accumulator()
    for k in group:
      accumulator = combiner.add_input(
        accumulator,
        metric_types.StandardMetricInputs(
          predictions=example_outputs(d, k), example_weights=np.array([1.0])
        ),
      )
    accumulators.append(accumulator)
  outputs = combiner.extract_output(combiner.merge_accumulators(accumulators))
  for computation in derived:
    outputs.update(computation.result(outputs))
  return {key.name: value for key, value in outputs.items() if not key.name.startswith('_')}


def test_combiner_matches_numpy_keras_mean_iou_and_the_training_loss():
  d = make_data()
  result = run_combiner(d, [range(IMAGES)])
  assert_metrics_equal(result, expected_metrics(d))

  # Own resolution: images of mixed sizes, every pixel counted once.
  keras_iou = tf_keras.metrics.MeanIoU(num_classes=len(CLASSES))
  for true, pred, valid in zip(d['native_ids'], d['native_pred'], d['native_valid']):
    keras_iou.update_state(true.ravel(), pred.ravel(), sample_weight=valid.ravel())
  np.testing.assert_array_equal(keras_iou.total_cm.numpy(), result['confusion_matrix'])
  assert result['mean_iou'] == pytest.approx(float(keras_iou.result()), abs=1e-6)
  # Model resolution.
  keras_model_iou = tf_keras.metrics.MeanIoU(num_classes=len(CLASSES))
  keras_model_iou.update_state(
    d['ids'], predicted_ids(d['probabilities']), sample_weight=d['valid']
  )
  assert result['mean_iou_model_resolution'] == pytest.approx(
    float(keras_model_iou.result()), abs=1e-6
  )
  assert result['mean_iou_model_resolution'] != pytest.approx(result['mean_iou'])

  # The absent class is NaN, flagged as absent, and left out of the mean instead of dragging it down.
  assert math.isnan(result['iou/never'])
  assert run_summary.format_value('iou/never', result['iou/never']) == 'absent'
  assert result['mean_iou'] == pytest.approx(np.mean([result[f'iou/{c}'] for c in CLASSES[:3]]))

  loss = losses.soft_iou_loss(
    tf.constant(d['labels'], tf.float32),
    tf.constant(d['probabilities'], tf.float32),
    tf.constant(d['valid'], tf.float32),
  )
  assert result['soft_iou_loss'] == pytest.approx(float(loss), rel=1e-5)


def test_all_ignore_images_count_for_nothing():
  d = make_data()
  only_ignore = run_combiner(d, [[0]])
  assert not only_ignore['confusion_matrix'].any()
  assert all(
    math.isnan(only_ignore[name])
    for name in [
      'mean_iou',
      'mean_iou_model_resolution',
      'pixel_accuracy',
      'frequency_weighted_iou',
    ]
    + [f'iou/{c}' for c in CLASSES]
  )
  assert only_ignore['soft_iou_loss'] == 0.0  # nothing to score: the loss's finite 0
  with_it = run_combiner(d, [range(IMAGES)])
  without_it = run_combiner(d, [range(1, IMAGES)])
  assert_metrics_equal(with_it, without_it)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=IMAGES, max_size=IMAGES))
def test_any_split_into_merged_accumulators_gives_the_same_numbers(worker_of_image):
  d = make_data()
  groups = [[k for k in range(IMAGES) if worker_of_image[k] == w] for w in range(4)]
  assert_metrics_equal(run_combiner(d, groups), expected_metrics(d))


def test_a_model_counting_other_classes_than_the_metric_is_refused():
  combiner, _ = _computations()
  outputs = {name: np.zeros((3, 3), np.int64) for name in SUM_OUTPUTS[:2]}
  outputs.update({name: np.zeros(()) for name in SUM_OUTPUTS[2:]})
  with pytest.raises(ValueError, match='4 classes'):
    combiner.add_input(
      combiner.create_accumulator(), metric_types.StandardMetricInputs(predictions=outputs)
    )


# --- the configuration --------------------------------------------------------------------------

# The path flags `flags.add_pipeline_arguments` requires.
PATHS = ['--data-root', 'd', '--pipeline-root', 'r', '--serving-dir', 's']


def test_flags_become_class_rules_and_slices():
  parser = argparse.ArgumentParser()
  flags.add_pipeline_arguments(parser)
  args = parser.parse_args(
    [
      *PATHS,
      '--class-names',
      ','.join(CLASSES),
      '--class-min-iou',
      'background=0.9,disc=0.5',
      '--max-class-drop',
      '0.05',
      '--slice-by',
      SOURCE,
      '--slice-by',
      'image/format,image/source',
      '--class-presence-slices',
    ]
  )
  options = flags.create_pipeline_kwargs(args, None)['blessing'].eval_options
  assert options == eval_config.EvalOptions(
    {'background': 0.9, 'disc': 0.5}, 0.05, [(SOURCE,), ('image/format', SOURCE)], True
  )
  config = eval_config.make_eval_config(len(CLASSES), 0.5, CLASSES, options)
  # TFMA runs the signature that returns per-example sums; the slices read the presence signature.
  (spec,) = config.model_specs
  assert spec.signature_name == export.EVALUATION_SIGNATURE
  assert list(spec.preprocessing_function_names) == [export.PRESENCE_SIGNATURE]
  # The mean-IoU rules stay the first spec's only metric (kubeflow.parameters edits it there).
  (mean_iou,) = config.metrics_specs[0].metrics
  assert mean_iou.threshold.value_threshold.lower_bound.value == 0.5
  per_class = {m.config: m for m in config.metrics_specs[1].metrics}
  assert len(per_class) == len(CLASSES)
  disc = next(m for c, m in per_class.items() if '"disc"' in c)
  (rule,) = disc.per_slice_thresholds
  assert list(rule.slicing_specs) == [tfma.SlicingSpec()]  # the whole split only
  assert rule.threshold.value_threshold.lower_bound.value == 0.5
  assert rule.threshold.change_threshold.absolute.value == -0.05
  assert [s.feature_keys for s in config.slicing_specs[1:3]] == [[SOURCE], ['image/format', SOURCE]]
  presence = [s.slice_keys_sql for s in config.slicing_specs if s.slice_keys_sql]
  assert len(presence) == len(CLASSES) - 1
  assert all(f'example.{export.CLASS_PRESENCE}' in sql for sql in presence)
  with pytest.raises(ValueError, match='unknown classes'):
    eval_config.make_eval_config(len(CLASSES), 0.5, CLASSES, eval_config.EvalOptions({'cat': 0.1}))
  with pytest.raises(SystemExit):
    parser.parse_args([*PATHS, '--class-min-iou', 'disc:0.5'])


def test_evaluation_batch_size_is_chosen_by_bytes():
  # The default model (16 filters, depth 3) outputs 484 floats per input pixel with 21 classes.
  per_example = 4 * 512 * 512 * (484 + 21 + 1)  # bytes per 512 px example: 506 MiB
  assert export.evaluation_batch_size(512, 21, 484) == 1  # never 0, even over the budget
  assert export.evaluation_batch_size(512, 21, 484, budget_bytes=5 * per_example) == 5
  assert export.evaluation_batch_size(256, 21, 484) == 2
  assert (
    export.evaluation_batch_size(32, 4, 206)
    == export.EVALUATION_BATCH_BYTES // (4 * 32 * 32 * (206 + 4 + 1))
    == 310
  )
  assert (
    export.activations_per_pixel(model_lib.build_fcn(512, 3, 21, base_filters=16, depth=3)) == 484
  )


# --- real TFMA on per-example sums, one worker and two ------------------------------------------


def _presence(d, k):
  return np.bincount(d['native_ids'][k][d['native_valid'][k]], minlength=len(CLASSES)) > 0


def _write_records(path, d, images):
  with tf.io.TFRecordWriter(path) as writer:
    for k in images:
      outputs = example_outputs(d, k)
      feature = {
        name: tf.train.Feature(int64_list=tf.train.Int64List(value=outputs[name].ravel()))
        for name in SUM_OUTPUTS[:2]
      }
      feature.update(
        {
          name: tf.train.Feature(float_list=tf.train.FloatList(value=[outputs[name]]))
          for name in SUM_OUTPUTS[2:]
        }
      )
      feature[export.CLASS_PRESENCE] = tf.train.Feature(
        int64_list=tf.train.Int64List(value=_presence(d, k).astype(int))
      )
      feature[SOURCE] = tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[d['sources'][k].encode()])
      )
      writer.write(
        tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
      )


def _schema():
  """Fixed shapes, so TFMA hands each example's sums as [C, C] arrays and scalars."""
  schema = schema_pb2.Schema()
  shapes = [(name, schema_pb2.INT, (len(CLASSES), len(CLASSES))) for name in SUM_OUTPUTS[:2]]
  shapes += [(name, schema_pb2.FLOAT, (1,)) for name in SUM_OUTPUTS[2:]]
  shapes += [
    (export.CLASS_PRESENCE, schema_pb2.INT, (len(CLASSES),)),
    (SOURCE, schema_pb2.BYTES, (1,)),
  ]
  for name, kind, shape in shapes:
    feature = schema.feature.add(name=name, type=kind)
    feature.presence.min_fraction = 1.0
    for size in shape:
      feature.shape.dim.add(size=size)
  return schema


def _model_agnostic_config():
  """The project's EvalConfig, with the signature's outputs read from the records instead of a
  model. Without a model there is no baseline: the change rule is left out, as TFMA does on a first
  run."""
  config = eval_config.make_eval_config(
    len(CLASSES),
    0.1,
    CLASSES,
    eval_config.EvalOptions(
      class_min_iou={'square': 0.99, 'never': 0.1},
      slice_features=[(SOURCE,)],
      class_presence_slices=True,
    ),
  )
  config.model_specs[0].CopyFrom(
    tfma.ModelSpec(prediction_keys={name: name for name in SUM_OUTPUTS})
  )
  config.metrics_specs[0].metrics[0].threshold.ClearField('change_threshold')
  return config


@pytest.fixture(scope='module')
def tfma_outputs(tmp_path_factory):
  """{'in_memory' | 'two_workers': output path} of the same evaluation; the data in 3 files, so
  the workers have something to share."""
  base = tmp_path_factory.mktemp('tfma')
  d = make_data()
  for shard in range(3):
    _write_records(str(base / f'data-{shard}.tfrecord'), d, range(shard, IMAGES, 3))
  outputs = {}
  for mode, beam_args in (
    ('in_memory', ['--direct_running_mode=in_memory']),
    ('two_workers', ['--direct_running_mode=multi_processing', '--direct_num_workers=2']),
  ):
    outputs[mode] = str(base / mode)
    tfma.run_model_analysis(
      eval_config=_model_agnostic_config(),
      data_location=str(base / 'data-*.tfrecord'),
      schema=_schema(),
      output_path=outputs[mode],
      pipeline_options=PipelineOptions(beam_args),
    )
  return outputs


def _expected_slices():
  """slice name -> numpy metrics of the images in it: the project's slices, by hand."""
  d = make_data()
  members = {run_summary.OVERALL: np.ones(IMAGES, bool)}
  members.update({f'{SOURCE}={s}': d['sources'] == s for s in set(d['sources'])})
  for k, name in enumerate(CLASSES[1:], start=1):
    has = np.array([_presence(d, i)[k] for i in range(IMAGES)])
    members[f'label_has_{name}=yes'] = has
    members[f'label_has_{name}=no'] = ~has
  return {name: expected_metrics(d, m) for name, m in members.items() if m.any()}


def test_tfma_gives_numpy_numbers_on_every_slice_with_one_worker_and_with_two(tfma_outputs):
  expected = _expected_slices()
  assert 'label_has_never=no' in expected and 'label_has_never=yes' not in expected
  for mode, path in tfma_outputs.items():
    slices = run_summary.sliced_metrics(path)
    assert set(slices) == set(expected), mode
    for name, metrics in expected.items():
      # The records hold the soft IoU sums as float32; the matrices are exact.
      assert_metrics_equal(slices[name][run_summary.CANDIDATE], metrics, rel=1e-6)
  assert run_summary.class_names(tfma_outputs['in_memory']) == CLASSES


def test_class_floors_fail_the_validation_naming_class_and_values(tfma_outputs):
  path = tfma_outputs['two_workers']
  assert not tfma.load_validation_result(path).validation_ok
  square = _expected_slices()[run_summary.OVERALL]['iou/square']
  assert sorted(run_summary.validation_failures(path)) == [
    'iou/never = absent: required >= 0.1',
    f'iou/square = {square:.4f}: required >= 0.99',
  ]


def test_summary_and_report_show_the_absent_class_as_absent(tfma_outputs):
  path = tfma_outputs['in_memory']
  slices = run_summary.sliced_metrics(path)
  summary = run_summary.RunSummary(
    'r',
    {},
    slices[run_summary.OVERALL][run_summary.CANDIDATE],
    {},
    False,
    run_summary.validation_failures(path),
    False,
    None,
    False,
    class_names=run_summary.class_names(path),
    slices=slices,
    evaluation_uri=path,
  )
  printed = run_summary.format_summary(summary)
  assert 'never                IoU absent (in neither labels nor predictions)' in printed
  model_resolution = summary.candidate_metrics['mean_iou_model_resolution']
  assert f'  mean IoU (model resolution)  {model_resolution:.4f}' in printed.splitlines()
  soup = BeautifulSoup(page.render(summary, [], 'p', 10), 'html.parser')
  cell = soup.select_one('#class-iou td[data-metric="iou/never"]')
  assert cell.get_text() == 'absent' and cell['data-value'] == 'nan'
  assert 'never' in soup.select_one('#absent').get_text()
  assert soup.select_one(f'#class-iou-chart [id="bar-candidate-{ABSENT}"]') is not None
  assert 'absent' in soup.select_one('#class-iou-chart').get_text()
