"""Real TFMA evaluates a trained tiny model, exported by `trainer.export` with each resize mode
(`none`: whole-image and sliding-window inference at each image's own size, most larger than the
model, the native sums counted in bands of rows),
on raw records of mixed sizes and aspect ratios: its numbers equal an independent numpy computation
from `serving_default`'s class ids and each mask decoded by PIL at its own size (and, at the model's
resolution, from `model_resolution` and `transform_features`); the evaluation signatures return no
per-pixel tensor and their chunks add up.
"""

import io
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
import tf_keras
from apache_beam.options.pipeline_options import PipelineOptions
from PIL import Image
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.tf_metadata import metadata_io

from iouseg import demo_data, run_summary
from pipeline import eval_config
from trainer import data, export, task
from trainer.config import TrainerConfig
from transform import data_format, features
from transform.config import TransformConfig
from transform.preprocessing import preprocessing_fn

from helpers import encoded
from iou_reference import SUM_OUTPUTS, assert_metrics_equal, predicted_ids, split_metrics

IGNORE = data_format.DEFAULT_IGNORE_LABEL
MODEL_CLASSES = ['background', 'disc', 'square', 'triangle']
MODEL_SIZE = 32
# The eval images' own sizes (rows, columns): landscape, portrait, square, long, odd.
MODEL_NATIVE_SIZES = [(40, 56), (64, 48), (48, 48), (30, 70), (56, 40), (33, 47), (48, 48)]
JPEG_IMAGE = 5
# The pad model's `evaluation_sums` runs 2 examples at a time, so that batches are split in chunks.
PAD_CHUNK = 2

# `none` predicts whole images, `none_slide` slides windows of the model size over them; both count
# the prediction against the mask in bands of rows (trainer.native_export), several per image here.
MODES = ('stretch', 'pad', 'none', 'none_slide')

# A model trained for the evaluation, and TFMA run over it twice.
pytestmark = pytest.mark.slow


def _resize_and_inference(mode: str):
  """A MODES entry -> (Transform's resize, the exported inference mode)."""
  resize, _, inference_mode = mode.partition('_')
  return resize, inference_mode or 'whole'


def _raw_records():
  """Demo images and masks (shapes, ignore-label outlines) cut to each size; one of them a JPEG."""
  rng = np.random.default_rng(5)
  records = []
  for k, (height, width) in enumerate(MODEL_NATIVE_SIZES):
    image, mask = demo_data.make_pair(rng, max(height, width), IGNORE)
    image, mask = image[:height, :width], mask[:height, :width]
    image_format = 'jpeg' if k == JPEG_IMAGE else 'png'
    records.append(
      data_format.make_example(
        encoded(image, image_format.upper()),
        image_format,
        height,
        width,
        3,
        f'eval/{k}.{image_format}',
        data_format.encode_png(mask),
      ).SerializeToString()
    )
  return records


def _raw_schema():
  """The schema of the project's records, as SchemaGen infers it: TFMA decodes the raw features."""
  schema = schema_pb2.Schema()
  for name, kind in (
    (data_format.IMAGE_ENCODED, schema_pb2.BYTES),
    (data_format.IMAGE_FORMAT, schema_pb2.BYTES),
    (data_format.IMAGE_FILENAME, schema_pb2.BYTES),
    (data_format.MASK_ENCODED, schema_pb2.BYTES),
    (data_format.MASK_FORMAT, schema_pb2.BYTES),
    (data_format.IMAGE_HEIGHT, schema_pb2.INT),
    (data_format.IMAGE_WIDTH, schema_pb2.INT),
    (data_format.IMAGE_CHANNELS, schema_pb2.INT),
  ):
    feature = schema.feature.add(name=name, type=kind)
    feature.presence.min_fraction = 1.0
    feature.shape.dim.add(size=1)
  return schema


def _transform_output(records, config: TransformConfig, base) -> tft.TFTransformOutput:
  """Transform's analysis (`preprocessing_fn`'s full pass) of `records`, written as Transform does."""
  spec = data_format.raw_feature_spec()
  raw = [
    {key: value.numpy() for key, value in tf.io.parse_single_example(r, spec).items()}
    for r in records
  ]
  metadata = tft.DatasetMetadata.from_feature_spec(spec)
  out = str(base / f'transform_{config.resize}')
  with tft_beam.Context(temp_dir=str(base / f'tft_tmp_{config.resize}')):
    transform_fn = (raw, metadata) | tft_beam.AnalyzeDataset(
      lambda inputs: preprocessing_fn(inputs, vars(config))
    )
    _ = transform_fn | tft_beam.WriteTransformFn(out)
  metadata_io.write_metadata(metadata, os.path.join(out, tft.TFTransformOutput.RAW_METADATA_DIR))
  return tft.TFTransformOutput(out)


def _model_eval_config():
  config = eval_config.make_eval_config(
    len(MODEL_CLASSES),
    0.0,
    MODEL_CLASSES,
    eval_config.EvalOptions(
      slice_features=[(data_format.IMAGE_FORMAT,)], class_presence_slices=True
    ),
  )
  config.metrics_specs[0].metrics[0].threshold.ClearField('change_threshold')  # no baseline
  return config


@pytest.fixture(scope='module')
def evaluated_models(tmp_path_factory):
  """MODES entry -> {'model': SavedModel path, 'tfma': TFMA output path}: one tiny model trained
  (briefly, with 'stretch') on the records, exported over each mode's transform graph, and
  evaluated by TFMA with the project's EvalConfig on the raw records of mixed sizes."""
  base = tmp_path_factory.mktemp('model_eval')
  records = _raw_records()
  data_path = str(base / 'eval.tfrecord')
  with tf.io.TFRecordWriter(data_path) as writer:
    for record in records:
      writer.write(record)
  tf_keras.utils.set_random_seed(0)
  trainer_config = TrainerConfig.from_flat(
    num_classes=len(MODEL_CLASSES), image_size=MODEL_SIZE, base_filters=8, depth=2, batch_size=4
  )
  network = task.compiled_model(trainer_config)
  outputs = {
    resize: _transform_output(
      records, TransformConfig(MODEL_SIZE, 3, len(MODEL_CLASSES), resize=resize), base
    )
    for resize in ('stretch', 'pad', 'none')
  }
  dataset = data.make_dataset(
    [data_path], outputs['stretch'], trainer_config.runtime.batch_size, seed=0
  )
  network.fit(dataset, steps_per_epoch=60, epochs=1, verbose=0)
  per_example = 4 * MODEL_SIZE**2 * (export.activations_per_pixel(network) + len(MODEL_CLASSES) + 1)
  evaluated = {}
  for mode in MODES:
    resize, inference_mode = _resize_and_inference(mode)
    budget = PAD_CHUNK * per_example if resize == 'pad' else export.EVALUATION_BATCH_BYTES
    model_dir = str(base / f'model_{mode}')
    network.save(
      model_dir,
      save_format='tf',
      signatures=export.add_signatures(
        network,
        outputs[resize],
        resize,
        evaluation_batch_bytes=budget,
        inference_mode=inference_mode,
      ),
    )
    config = _model_eval_config()
    evaluated[mode] = {'model': model_dir, 'tfma': str(base / f'tfma_{mode}')}
    tfma.run_model_analysis(
      eval_shared_model=tfma.default_eval_shared_model(
        eval_saved_model_path=model_dir, eval_config=config
      ),
      eval_config=config,
      data_location=data_path,
      schema=_raw_schema(),
      output_path=evaluated[mode]['tfma'],
      pipeline_options=PipelineOptions(['--direct_running_mode=in_memory']),
    )
  return evaluated


def _content_size(height, width, resize):
  """Where an image's content sits in the model input, computed again: all of it when stretched,
  else the long side scaled to the model size, aspect kept."""
  if resize == 'stretch':
    return MODEL_SIZE, MODEL_SIZE
  if resize == 'none':  # the image at its own size: the prediction is made there (whole)
    return height, width
  scale = MODEL_SIZE / max(height, width)
  return (
    min(MODEL_SIZE, max(1, int(np.round(height * scale)))),
    min(MODEL_SIZE, max(1, int(np.round(width * scale)))),
  )


def _numpy_evaluation(model_dir, resize):
  """What TFMA must report, computed from the model's per-pixel signatures and each mask decoded by
  PIL at its own size: per example, (native true ids, native predicted ids, model-resolution one-hot
  labels, probabilities, weights) and the image's format."""
  records = _raw_records()
  model = tf.saved_model.load(model_dir)
  batch = tf.constant(records)
  served = model.signatures['serving_default'](examples=batch)
  at_model = model.signatures['model_resolution'](examples=batch)['probabilities'].numpy()
  transformed = model.signatures['transform_features'](examples=batch)
  examples = []
  for k, record in enumerate(records):
    feature = tf.train.Example.FromString(record).features.feature
    mask = np.asarray(
      Image.open(io.BytesIO(feature[data_format.MASK_ENCODED].bytes_list.value[0])), dtype=np.int64
    )
    height, width = mask.shape
    assert (height, width) == MODEL_NATIVE_SIZES[k]
    assert (served['height'][k], served['width'][k]) == (height, width)
    # The prediction at the image's size is the content's probabilities resized bilinearly.
    rows, cols = _content_size(height, width, resize)
    back = tf.image.resize(at_model[k][:rows, :cols], [height, width], method='bilinear').numpy()
    probabilities = served['probabilities'][k, :height, :width].numpy()
    np.testing.assert_allclose(probabilities, back, atol=1e-5)
    native_pred = served['class_ids'][k, :height, :width].numpy()
    np.testing.assert_array_equal(native_pred, predicted_ids(probabilities))
    examples.append(
      dict(
        true=mask,
        pred=native_pred,
        label=transformed[features.LABEL][k].numpy(),
        probabilities=at_model[k].astype(np.float64),
        weight=transformed[features.WEIGHT][k].numpy(),
        format=feature[data_format.IMAGE_FORMAT].bytes_list.value[0].decode(),
        rows_cols=(rows, cols),
      )
    )
  return examples


def _expected_model_metrics(examples):
  return split_metrics(
    [
      (
        (e['true'], e['pred'], e['true'] != IGNORE),
        (e['label'].argmax(-1), e['label'], e['probabilities'], e['weight'] > 0),
      )
      for e in examples
    ],
    MODEL_CLASSES,
  )


@pytest.mark.parametrize('mode', MODES)
def test_tfma_iou_at_each_images_own_size_equals_numpy_on_mixed_sizes(evaluated_models, mode):
  resize = _resize_and_inference(mode)[0]
  examples = _numpy_evaluation(evaluated_models[mode]['model'], resize)
  if resize == 'pad':  # the aspect ratio is kept: a wide image fills the model input's top rows
    assert examples[3]['rows_cols'] == (14, MODEL_SIZE)
    assert not examples[3]['weight'][14:].any() and examples[3]['weight'][:14].mean() > 0.9
  members = {run_summary.OVERALL: [True] * len(examples)}
  for image_format in ('png', 'jpeg'):
    members[f'{data_format.IMAGE_FORMAT}={image_format}'] = [
      e['format'] == image_format for e in examples
    ]
  for k, name in enumerate(MODEL_CLASSES[1:], start=1):
    has = [bool((e['true'] == k).any()) for e in examples]
    members[f'label_has_{name}=yes'] = has
    members[f'label_has_{name}=no'] = [not h for h in has]
  expected = {
    name: _expected_model_metrics([e for e, m in zip(examples, member) if m])
    for name, member in members.items()
    if any(member)
  }
  assert len(expected) >= 8  # the presence slices split the images both ways
  slices = run_summary.sliced_metrics(evaluated_models[mode]['tfma'])
  assert set(slices) == set(expected)
  for name, metrics in expected.items():
    assert_metrics_equal(slices[name][run_summary.CANDIDATE], metrics, rel=0, abs_=1e-6)
  overall = slices[run_summary.OVERALL][run_summary.CANDIDATE]
  assert 0 < overall['mean_iou'] < 1
  # With `none` the model's resolution is the image's own: both scores are one confusion matrix.
  same = overall['mean_iou'] == overall['mean_iou_model_resolution']
  assert same == (resize == 'none')


def test_evaluation_signatures_return_no_per_pixel_tensor_and_chunks_add_up(evaluated_models):
  records = tf.constant(_raw_records())
  num_classes = len(MODEL_CLASSES)
  for _resize, paths in evaluated_models.items():
    model = tf.saved_model.load(paths['model'])
    for name in (export.EVALUATION_SIGNATURE, export.PRESENCE_SIGNATURE):
      for output in model.signatures[name].structured_outputs.values():
        assert all(dim in (None, num_classes) for dim in output.shape), (name, output)
    # All the records at once (the pad model walks them in chunks of PAD_CHUNK, the last one
    # shorter) give what each record gives alone.
    together = model.signatures[export.EVALUATION_SIGNATURE](examples=records)
    alone = [
      model.signatures[export.EVALUATION_SIGNATURE](examples=records[k : k + 1])
      for k in range(len(MODEL_NATIVE_SIZES))
    ]
    for name in SUM_OUTPUTS:
      np.testing.assert_allclose(
        together[name].numpy(), np.concatenate([a[name].numpy() for a in alone]), rtol=1e-6
      )
    presence = model.signatures[export.PRESENCE_SIGNATURE](examples=records)[export.CLASS_PRESENCE]
    assert presence.shape == (len(MODEL_NATIVE_SIZES), num_classes)
