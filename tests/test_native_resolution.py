"""Images larger than the model (`--resize none`): crops for training, whole-image and sliding-window
inference, and the settings carried to Kubeflow.

The crop, `whole` and `slide` tests run the project's functions on a tiny untrained FCN (its weights
are random: what is checked is the geometry, not the quality); a numpy re-implementation of the
window grid and the averaging checks `slide`; `--crop-cat-max-ratio` crops pass MMSegmentation's
test, counted by numpy; a MobileNetV2 encoder trains on the Trainer's crops and its exported model
predicts a whole image of a size no multiple of its stride (slow). One tiny pipeline run (e2e)
trains on crops of images of mixed sizes, and `iouseg predict --inference slide|whole` segments them
at their own sizes, as the serving signature of that mode does.
TFMA's native mean IoU in `none` mode against numpy is in tests/test_evaluation_native.py.
"""

import argparse
import json

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from iouseg import cli, demo_data, predict
from iouseg.predict import serialized_example
from kubeflow import compile as compile_lib
from kubeflow import local_launcher
from trainer import crops, export, inference, model
from trainer.config import ModelConfig, TrainerConfig
from transform import data_format

from helpers import encoded, run_tiny_pipeline

WINDOW, CLASSES, DEPTH = 32, 4, 2
IGNORE = data_format.DEFAULT_IGNORE_LABEL


@pytest.fixture(scope='module')
def network():
  """A tiny FCN with random weights and moved batch-norm statistics (so padding is not neutral)."""
  tf_keras.utils.set_random_seed(3)
  net = model.build_fcn(WINDOW, 3, CLASSES, base_filters=4, depth=DEPTH)
  for layer in net.layers:
    if isinstance(layer, tf_keras.layers.BatchNormalization):
      gamma, beta, mean, variance = layer.get_weights()
      rng = np.random.default_rng(len(layer.name))
      layer.set_weights(
        [gamma, rng.normal(size=beta.shape), rng.normal(size=mean.shape), variance + 0.5]
      )
  return net


def _record(height: int, width: int, seed: int):
  """A labelled scene: image [H, W, 3] float32 whose channels are (class id, row + 1, column + 1),
  so 0 in the last two marks padding; one-hot label [H, W, K] with some ignored pixels (all-zero
  rows); weight [H, W]."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(0, CLASSES, (height, width))
  ignored = rng.random((height, width)) < 0.1
  rows, cols = np.mgrid[0:height, 0:width]
  image = np.stack([ids, rows + 1, cols + 1], axis=-1).astype(np.float32)
  label = np.eye(CLASSES, dtype=np.float32)[ids] * ~ignored[..., None]
  return image, label, (~ignored).astype(np.float32)


def test_a_crop_at_scale_one_copies_pixels_and_pads_with_weight_zero():
  # Taller than the crop, narrower: every crop holds a window of 32 rows and all 24 columns, and 8
  # columns of padding.
  image, label, weight = _record(40, 24, seed=0)
  tops = set()
  for seed in range(8):
    out_image, out_label, out_weight = (
      t.numpy() for t in crops.cut(image, label, weight, crops.CropOptions(WINDOW), [seed, 0])
    )
    on_image = out_image[..., 2] > 0
    rows, cols = out_image[..., 1].astype(int) - 1, out_image[..., 2].astype(int) - 1
    src = (rows[on_image], cols[on_image])
    np.testing.assert_array_equal(out_label[on_image], label[src])
    np.testing.assert_array_equal(out_weight[on_image], weight[src])
    np.testing.assert_array_equal(out_image[on_image][:, 0], image[src][:, 0])
    top = rows[0, np.argmax(on_image[0])]
    np.testing.assert_array_equal(rows[:, np.argmax(on_image[0])], np.arange(top, top + WINDOW))
    assert on_image.sum() == WINDOW * 24
    tops.add(int(top))
    # The padding: weight 0, no class, image 0.
    assert not out_weight[~on_image].any() and not out_label[~on_image].any()
    assert not out_image[~on_image].any()
  assert len(tops) > 1  # the window moves with the seed


def test_a_crop_at_a_random_scale_keeps_label_and_weight_on_the_image_pixel_it_samples():
  image, label, weight = _record(50, 70, seed=1)
  options = crops.CropOptions(WINDOW, min_scale=0.5, max_scale=2.0)
  mask = np.where(weight > 0, label.argmax(-1), -1)
  padding_seen = 0
  for seed in range(12):
    out_image, out_label, out_weight = (
      t.numpy() for t in crops.cut(image, label, weight, options, [seed, 7])
    )
    # Rows and columns are linear: bilinear sampling gives back each crop pixel's source point.
    transform = crops.crop_transform(50, 70, options, [seed, 7]).numpy()
    ys, xs = np.mgrid[0:WINDOW, 0:WINDOW].astype(np.float64)
    src_x = transform[0] * xs + transform[2]
    src_y = transform[4] * ys + transform[5]
    inside = (np.round(src_x) >= 0) & (np.round(src_x) < 70) & (np.round(src_y) >= 0)
    inside &= np.round(src_y) < 50
    # Away from a rounding tie, the nearest source pixel decides class and weight.
    clear = (np.abs(src_x % 1 - 0.5) > 1e-3) & (np.abs(src_y % 1 - 0.5) > 1e-3)
    row = np.clip(np.round(src_y), 0, 49).astype(int)
    col = np.clip(np.round(src_x), 0, 69).astype(int)
    expected = np.where(inside, mask[row, col], -1)
    got = np.where(out_weight > 0, out_label.argmax(-1), -1)
    np.testing.assert_array_equal(got[clear], expected[clear])
    np.testing.assert_array_equal(out_weight[clear], np.where(inside, weight[row, col], 0)[clear])
    assert not out_label[~inside].any() and not out_image[~inside].any()
    padding_seen += int((~inside).sum())
  assert padding_seen > 0  # scales below 0.7 make the crop larger than the scaled image


def _numpy_passes_cat_max_ratio(label: np.ndarray, weight: np.ndarray, ratio: float) -> bool:
  """MMSegmentation's test of a crop: more than one class among its labelled pixels (ignored and
  padding pixels left out) and the largest below `ratio` of them."""
  counts = np.bincount(label.argmax(-1)[weight > 0], minlength=CLASSES)
  return np.count_nonzero(counts) > 1 and counts.max() < ratio * counts.sum()


def test_cat_max_ratio_draws_a_crop_again_until_no_class_covers_the_fraction():
  # 32 x 64: columns 0-15 ignored, 16-31 class 1, 32-63 class 0. At scale 1 a crop starts at one of
  # 33 columns x; it passes 0.75 for x in 6..23 only. Counting the ignored pixels as a class would
  # pass x = 0..5 as well.
  image, label, weight = _record(WINDOW, 2 * WINDOW, seed=2)
  ids = np.where(np.arange(2 * WINDOW) < WINDOW, 1, 0)[None].repeat(WINDOW, axis=0)
  label = np.eye(CLASSES, dtype=np.float32)[ids]
  label[:, :16], weight = 0, np.ones_like(weight)
  weight[:, :16] = 0
  passed, starts = {}, {}
  for ratio in (1.0, 0.75):
    options = crops.CropOptions(WINDOW, cat_max_ratio=ratio)
    passed[ratio], starts[ratio] = [], []
    for seed in range(16):
      out_image, out_label, out_weight = (
        t.numpy() for t in crops.cut(image, label, weight, options, [seed, 1])
      )
      # Still one window of the image: label and weight those of the pixel the image came from.
      cols = out_image[..., 2].astype(int) - 1
      np.testing.assert_array_equal(out_label, label[:, cols[0]])
      np.testing.assert_array_equal(out_weight, weight[:, cols[0]])
      passed[ratio].append(_numpy_passes_cat_max_ratio(out_label, out_weight, 0.75))
      starts[ratio].append(int(cols[0, 0]))
  assert all(passed[0.75])
  assert 0 < sum(passed[1.0]) < 16  # without it some crops are one class or mostly one
  # The first draw keeps the seed: a crop that passes is the one drawn without the option.
  for seed, ok in enumerate(passed[1.0]):
    assert not ok or starts[0.75][seed] == starts[1.0][seed]


@pytest.mark.parametrize('ratio', [0.0, 1.5, float('nan')])
def test_crop_cat_max_ratio_is_a_fraction_above_zero(ratio):
  with pytest.raises(ValueError, match='crop_cat_max_ratio'):
    TrainerConfig.from_flat(resize='none', crop_cat_max_ratio=ratio)


def test_whole_equals_the_keras_model_on_the_padded_image_cropped_back(network):
  image = tf.random.stateless_normal([45, 70, 3], seed=[1, 2])
  stride = inference.output_stride(network)
  assert stride == 2**DEPTH
  # The same network built for the padded size (48 x 72), with the same weights.
  direct = tf_keras.models.clone_model(network, input_tensors=tf_keras.Input((48, 72, 3)))
  direct.set_weights(network.get_weights())
  padded = tf.pad(image, [[0, 3], [0, 2], [0, 0]])
  expected = direct.predict(padded[None], verbose=0)[0, :45, :70]
  got = inference.whole(network, image, stride).numpy()
  assert got.shape == (45, 70, CLASSES)
  np.testing.assert_allclose(got, expected, atol=1e-5)


def test_slide_with_one_window_of_the_image_size_equals_whole(network):
  image = tf.random.stateless_normal([WINDOW, WINDOW, 3], seed=[3, 4])
  np.testing.assert_allclose(
    inference.slide(network, image, 1 / 3, 4).numpy(),
    inference.whole(network, image, inference.output_stride(network)).numpy(),
    atol=1e-5,
  )


def _numpy_slide(network, image: np.ndarray, overlap: float) -> np.ndarray:
  """MMSegmentation's slide_inference written out: a grid of windows `step` apart, the last one of
  each row and column ending at the edge; per pixel the mean of the windows' probabilities."""
  height, width, _ = image.shape
  step = max(1, round(WINDOW * (1 - overlap)))
  sums = np.zeros((height, width, CLASSES))
  counts = np.zeros((height, width))
  for i in range(max(height - WINDOW + step - 1, 0) // step + 1):
    for j in range(max(width - WINDOW + step - 1, 0) // step + 1):
      top = min(i * step, height - WINDOW)
      left = min(j * step, width - WINDOW)
      window = image[top : top + WINDOW, left : left + WINDOW]
      sums[top : top + WINDOW, left : left + WINDOW] += network.predict(window[None], verbose=0)[0]
      counts[top : top + WINDOW, left : left + WINDOW] += 1
  return sums / counts[..., None]


@pytest.mark.parametrize('overlap', [1 / 3, 0.5])
def test_slide_on_three_windows_each_way_averages_as_numpy_does(network, overlap):
  image = tf.random.stateless_normal([3 * WINDOW, 3 * WINDOW, 3], seed=[5, 6])
  # 4 windows at a time: the 25 (or 36) windows end with a partial batch.
  got = inference.slide(network, image, overlap, 4).numpy()
  np.testing.assert_allclose(got, _numpy_slide(network, image.numpy(), overlap), atol=1e-5)
  # Overlapping windows disagree near their edges: the average is not any one window's output.
  assert not np.allclose(got, inference.whole(network, image, 4).numpy(), atol=1e-3)


def test_slide_on_an_image_smaller_than_a_window_pads_it_to_one(network):
  image = tf.random.stateless_normal([20, 50, 3], seed=[7, 8])
  got = inference.slide(network, image, 1 / 3, 2).numpy()
  padded = np.pad(image.numpy(), [[0, WINDOW - 20], [0, 0], [0, 0]])
  np.testing.assert_allclose(got, _numpy_slide(network, padded, 1 / 3)[:20], atol=1e-5)


def test_the_compiled_kubeflow_spec_carries_the_native_resolution_settings(tmp_path):
  from test_kubeflow import TINY

  parser = argparse.ArgumentParser()
  compile_lib.add_compile_arguments(parser)
  path = tmp_path / 'p.yaml'
  flags = ['--resize', 'none', '--inference', 'slide', '--slide-overlap', '0.25']
  flags += ['--random-scale', '--min-scale', '0.75', '--max-scale', '1.5']
  assert compile_lib.compile_main(parser.parse_args(TINY + flags + ['--output', str(path)])) == 0
  tasks = local_launcher.load_spec(str(path)).root.dag.tasks

  def custom_config(task):
    return json.loads(
      tasks[task].inputs.parameters['custom_config'].runtime_value.constant.string_value
    )

  trainer = custom_config('Trainer')
  assert trainer['data']['resize'] == 'none' and custom_config('Transform')['resize'] == 'none'
  assert trainer['model']['inference'] == 'slide' and trainer['model']['slide_overlap'] == 0.25
  assert trainer['augmentation']['random_scale'] is True
  assert (trainer['augmentation']['min_scale'], trainer['augmentation']['max_scale']) == (0.75, 1.5)


def test_slide_inference_without_resize_none_is_refused_in_one_line(tmp_path, capsys):
  from test_kubeflow import TINY

  argv = ['compile-kubeflow', *TINY, '--inference', 'slide', '--output', str(tmp_path / 'p.yaml')]
  assert cli.main(argv) == 2
  assert not (tmp_path / 'p.yaml').exists()
  error = capsys.readouterr().err.strip()
  assert len(error.splitlines()) == 1 and '--inference slide needs --resize none' in error


@pytest.mark.slow
def test_transform_keeps_each_size_normalises_over_every_pixel_and_one_hot_encodes(tmp_path):
  """Transform's analyzers (TFT on Beam) over records of three sizes, with `--resize none`."""
  from test_evaluation_native import _transform_output

  from transform.config import TransformConfig
  from transform.preprocessing import VARIANCE_EPSILON

  rng = np.random.default_rng(4)
  pairs, records = [], []
  for k, (height, width) in enumerate([(40, 56), (33, 47), (64, 20)]):
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    mask = rng.integers(0, CLASSES, (height, width)).astype(np.uint8)
    mask[rng.random((height, width)) < 0.1] = IGNORE
    pairs.append((image, mask))
    records.append(
      data_format.make_example(
        encoded(image), 'png', height, width, 3, f'{k}.png', data_format.encode_png(mask)
      ).SerializeToString()
    )
  output = _transform_output(records, TransformConfig(WINDOW, 3, CLASSES, resize='none'), tmp_path)
  layer = output.transform_features_layer()
  pixels = np.concatenate([image.reshape(-1, 3) for image, _ in pairs]).astype(np.float64)
  mean, variance = pixels.mean(0), pixels.var(0)
  for record, (image, mask) in zip(records, pairs):
    transformed = layer(tf.io.parse_example(tf.constant([record]), output.raw_feature_spec()))
    got = {
      key: value.to_tensor()[0].numpy()
      for key, value in transformed.items()
      if key != 'label_positions'
    }
    assert got['image'].shape == image.shape  # its own size
    np.testing.assert_allclose(
      got['image'], (image - mean) / np.sqrt(variance + VARIANCE_EPSILON), atol=1e-4
    )
    ignored = mask == IGNORE
    np.testing.assert_array_equal(got['label'].argmax(-1)[~ignored], mask[~ignored])
    assert not got['label'][ignored].any() and got['label'].sum(-1)[~ignored].min() == 1
    np.testing.assert_array_equal(got['weight'], (~ignored).astype(np.float32))


def _records_of(pairs):
  return [
    data_format.make_example(
      encoded(image), 'png', *image.shape, f'{k}.png', data_format.encode_png(mask)
    ).SerializeToString()
    for k, (image, mask) in enumerate(pairs)
  ]


@pytest.fixture(scope='module')
def native_transform(tmp_path_factory):
  """A `--resize none` transform graph (TFT on Beam) over random records of two sizes, and its
  Keras layer."""
  from test_evaluation_native import _transform_output

  from transform.config import TransformConfig

  rng = np.random.default_rng(11)
  pairs = [
    (rng.integers(0, 256, (h, w, 3), dtype=np.uint8), rng.integers(0, CLASSES, (h, w), np.uint8))
    for h, w in [(40, 56), (64, 20)]
  ]
  config = TransformConfig(WINDOW, 3, CLASSES, resize='none')
  output = _transform_output(_records_of(pairs), config, tmp_path_factory.mktemp('transform'))
  return output, output.transform_features_layer()


def _transformed_image(layer, output, image_bytes: bytes) -> np.ndarray:
  """The transform graph's normalised image of one encoded image, at its own size."""
  spec = {data_format.IMAGE_ENCODED: output.raw_feature_spec()[data_format.IMAGE_ENCODED]}
  raw = tf.io.parse_example(tf.constant([serialized_example(image_bytes)]), spec)
  return layer(raw)['image'].to_tensor()[0].numpy()


@pytest.mark.slow
def test_the_pixel_map_read_from_the_transform_graph_normalises_as_the_graph_does(native_transform):
  """What the signatures normalise window by window is, to the bit, what the transform graph makes
  of the whole image, for a PNG and a JPEG at a size of neither probe."""
  from trainer import native_export

  output, layer = native_transform
  table = native_export.pixel_map(layer, 3)
  assert table is not None
  image = np.random.default_rng(12).integers(0, 256, (45, 70, 3), dtype=np.uint8)
  for image_format in ('PNG', 'JPEG'):
    image_bytes = encoded(image, image_format)
    decoded = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    whole_image = _transformed_image(layer, output, image_bytes)
    normalise = native_export.table_normalise(table)
    np.testing.assert_array_equal(normalise(decoded).numpy(), whole_image)
    # A window cut out and normalised alone: the same pixels as the whole image's.
    np.testing.assert_array_equal(
      normalise(decoded[10 : 10 + WINDOW, 30 : 30 + WINDOW]).numpy(),
      whole_image[10 : 10 + WINDOW, 30 : 30 + WINDOW],
    )


@pytest.mark.slow
def test_a_transform_graph_that_is_no_pixel_map_is_found_out(tmp_path):
  """A real transform graph (TFT on Beam) that subtracts each image's own mean keeps each size and
  channel but is no map of pixel values: `pixel_map` says so (the signatures then normalise the
  whole image with the Transform layer, as before windows were normalised alone)."""
  import tensorflow_transform as tft
  import tensorflow_transform.beam as tft_beam

  from trainer import native_export

  def own_mean(inputs):
    def one(image_bytes):
      image = tf.cast(tf.io.decode_image(image_bytes, 3, expand_animations=False), tf.float32)
      image.set_shape([None, None, 3])
      return tf.RaggedTensor.from_tensor(image - tf.reduce_mean(image, axis=[0, 1]))

    images = tf.map_fn(
      one,
      tf.reshape(inputs[data_format.IMAGE_ENCODED], [-1]),
      fn_output_signature=tf.RaggedTensorSpec([None, None, 3], tf.float32, ragged_rank=1),
    )
    return {'image': images}

  spec = data_format.raw_feature_spec()
  image = np.random.default_rng(14).integers(0, 256, (20, 30, 3), dtype=np.uint8)
  rows = [
    {key: value.numpy() for key, value in tf.io.parse_single_example(record, spec).items()}
    for record in _records_of([(image, np.zeros((20, 30), np.uint8))])
  ]
  with tft_beam.Context(temp_dir=str(tmp_path / 'tmp')):
    transform_fn = (rows, tft.DatasetMetadata.from_feature_spec(spec)) | tft_beam.AnalyzeDataset(
      own_mean
    )
    _ = transform_fn | tft_beam.WriteTransformFn(str(tmp_path / 'graph'))
  layer = tft.TFTransformOutput(str(tmp_path / 'graph')).transform_features_layer()
  assert native_export.pixel_map(layer, 3) is None


@pytest.mark.slow
def test_masks_with_slide_are_the_decoded_average_of_the_windows_on_a_large_image(native_transform):
  """The exported `masks` signature (slide, class ids band by band, windows normalised one by one)
  against numpy's slide over the transform graph's whole normalised image, decoded by the
  project's rule; `serving_slide`'s probabilities against the same average."""
  from trainer import decode

  output, layer = native_transform
  # Two convolutions with random weights: unlike the FCN fixture (whose outputs stay near 0.5 and
  # decode to one class everywhere) their class ids vary from pixel to pixel, and zero padding
  # makes overlapping windows disagree at their edges.
  tf_keras.utils.set_random_seed(4)
  inputs = tf_keras.Input((WINDOW, WINDOW, 3))
  hidden = tf_keras.layers.Conv2D(8, 3, padding='same', activation='relu')(inputs)
  probabilities = tf_keras.layers.Conv2D(CLASSES, 3, padding='same', activation='sigmoid')(hidden)
  network = tf_keras.Model(inputs, probabilities)
  signatures = export.add_signatures(network, output, resize='none', inference_mode='slide')
  # 5 x 6 windows of 32 at overlap 1/3, the last of each row and column moved back to the edge.
  image = np.random.default_rng(13).integers(0, 256, (100, 120, 3), dtype=np.uint8)
  request = tf.constant([serialized_example(encoded(image))])
  expected = _numpy_slide(network, _transformed_image(layer, output, encoded(image)), 1 / 3)
  masks = signatures[export.MASKS_SIGNATURE](examples=request)
  got = tf.io.decode_png(masks[export.MASKS][0, 0]).numpy()[..., 0]
  assert (masks[export.HEIGHT].numpy(), masks[export.WIDTH].numpy()) == ([100], [120])
  # float32 sums against numpy's float64: only a pixel at a tie of the decoding rule may differ.
  foreground = np.sort(expected[..., 1:], axis=-1)
  clear = (np.abs(foreground[..., -1] - decode.FOREGROUND_THRESHOLD) > 1e-4) & (
    foreground[..., -1] - foreground[..., -2] > 1e-4
  )
  assert clear.mean() > 0.99
  np.testing.assert_array_equal(got[clear], decode.class_ids_np(expected)[clear])
  assert len(np.unique(got)) > 1  # not one class everywhere: the comparison says something
  served = signatures[export.serving_signature('slide')](examples=request)
  np.testing.assert_allclose(served['probabilities'][0].numpy(), expected, atol=1e-5)


# --- one tiny pipeline: crops of images of mixed sizes, then `iouseg predict --inference slide` ---

# (rows, columns) of the records: all larger than the 32 px model, none square but one.
TRAIN_SIZES = [(64, 96), (80, 64), (100, 72), (72, 72)] * 3
EVAL_SIZES = [(70, 90), (96, 66)]


def _write_split(path, sizes, seed: int):
  rng = np.random.default_rng(seed)
  with tf.io.TFRecordWriter(str(path)) as writer:
    for k, (height, width) in enumerate(sizes):
      image, mask = demo_data.make_pair(rng, max(height, width), IGNORE)
      image, mask = image[:height, :width], mask[:height, :width]
      writer.write(
        data_format.make_example(
          encoded(image), 'png', height, width, 3, f'{k}.png', data_format.encode_png(mask)
        ).SerializeToString()
      )


@pytest.fixture(scope='module')
def native_run(tmp_path_factory):
  """A `--resize none` pipeline run (whole inference, the default) on images of mixed sizes."""
  base = tmp_path_factory.mktemp('native_run')
  for split, sizes, seed in (('train', TRAIN_SIZES, 0), ('eval', EVAL_SIZES, 1)):
    (base / 'data' / split).mkdir(parents=True)
    _write_split(base / 'data' / split / 'records.tfrecord', sizes, seed)
  metadata = run_tiny_pipeline(
    base,
    base / 'data',
    'native',
    train_steps=8,
    trainer_overrides={'resize': 'none', 'random_scale': True, 'batch_size': 4},
  )
  return base, metadata


@pytest.mark.e2e
def test_iouseg_predict_slide_writes_masks_of_each_images_own_size(native_run, tmp_path):
  from PIL import Image

  base, _ = native_run
  rng = np.random.default_rng(9)
  paths = []
  for k, (height, width) in enumerate([(50, 130), (97, 41), (32, 32)]):
    image, _ = demo_data.make_pair(rng, max(height, width), IGNORE)
    path = tmp_path / f'image_{k}.png'
    path.write_bytes(encoded(image[:height, :width]))
    paths.append((path, (height, width)))
  signatures = tf.saved_model.load(predict.resolve_saved_model(str(base / 'serving'))).signatures
  for mode in ('slide', 'whole'):
    out = tmp_path / mode
    argv = ['predict', '--model', str(base / 'serving'), '--output', str(out)]
    assert cli.main(argv + ['--inference', mode] + [str(p) for p, _ in paths]) == 0
    for path, size in paths:
      mask = np.asarray(Image.open(out / f'{path.stem}.mask.png'))
      assert mask.shape == size and mask.max() < CLASSES
      # The bounded masks signature predict runs gives what a serving client of that mode reads.
      served = predict.predict_bytes(signatures[export.serving_signature(mode)], path.read_bytes())
      np.testing.assert_array_equal(mask, served, err_msg=f'{mode} {path.name}')


def test_the_random_scale_moves_from_the_augmentation_into_the_train_crop():
  config = TrainerConfig.from_flat(
    resize='none', image_size=64, random_scale=True, min_scale=0.75, photometric=True
  )
  train, evaluation, rest = crops.train_and_eval_options(config)
  assert (train.size, train.min_scale, train.max_scale, train.random) == (64, 0.75, 2.0, True)
  assert (evaluation.min_scale, evaluation.max_scale, evaluation.random) == (1.0, 1.0, False)
  assert (
    (rest.min_scale, rest.max_scale) == (1.0, 1.0) and rest.horizontal_flip and rest.photometric
  )
  # Nothing left to do on the batch: no augmentation after the crop; --no-augment: crops at scale 1.
  assert (
    crops.train_and_eval_options(config.replace(horizontal_flip=False, photometric=False))[2]
    is None
  )
  train, _, rest = crops.train_and_eval_options(config.replace(augment=False))
  assert (train.min_scale, train.max_scale, rest) == (1.0, 1.0, None)


@pytest.mark.parametrize('overlap', [-0.1, 1.0])
def test_slide_overlap_is_a_fraction_below_one(overlap):
  with pytest.raises(ValueError, match='slide_overlap'):
    ModelConfig(slide_overlap=overlap)


@pytest.mark.slow
def test_an_application_encoder_trains_on_crops_and_predicts_a_whole_image_of_any_size(tmp_path):
  """`--encoder mobilenet_v2 --resize none`: the Trainer's feed of crops, then the exported
  `serving_default` (whole) on an image whose sides are no multiple of the crop or the stride."""
  from test_evaluation_native import _transform_output

  from trainer import data, task
  from transform.config import TransformConfig

  path = tmp_path / 'train.tfrecord'
  _write_split(path, TRAIN_SIZES[:4], seed=2)
  records = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
  config = TrainerConfig.from_flat(
    resize='none',
    image_size=WINDOW,
    num_classes=CLASSES,
    encoder='mobilenet_v2',
    base_filters=2,
    batch_size=2,
    random_scale=True,
    seed=0,
  )
  output = _transform_output(records, TransformConfig(WINDOW, 3, CLASSES, resize='none'), tmp_path)
  train, _ = data.train_and_eval([str(path)], [str(path)], output, config)
  images, labels, _ = next(iter(train))
  assert images.shape == (2, WINDOW, WINDOW, 3) and labels.shape == (2, WINDOW, WINDOW, CLASSES)
  network = task.compiled_model(config, total_steps=2)
  history = network.fit(train, steps_per_epoch=2, epochs=1, verbose=0)
  assert np.isfinite(history.history['loss']).all()
  assert inference.output_stride(network) == 32
  serving = export.add_signatures(network, output, resize='none')['serving_default']
  rng = np.random.default_rng(3)
  image, mask = demo_data.make_pair(rng, 70, IGNORE)
  request = data_format.make_example(
    encoded(image[:45, :70]), 'png', 45, 70, 3, 'x.png', data_format.encode_png(mask[:45, :70])
  ).SerializeToString()
  served = serving(examples=tf.constant([request]))
  assert served['probabilities'].shape == (1, 45, 70, CLASSES)
  assert (served['height'].numpy(), served['width'].numpy()) == ([45], [70])
  # The whole image at once: the network on it padded to 64 x 96, cropped back.
  normalised = output.transform_features_layer()(
    tf.io.parse_example(tf.constant([request]), output.raw_feature_spec())
  )['image'].to_tensor()[0]
  np.testing.assert_allclose(
    served['probabilities'][0].numpy(), inference.whole(network, normalised, 32).numpy(), atol=1e-5
  )
