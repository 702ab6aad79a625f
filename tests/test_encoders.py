"""Known encoders (`--encoder`), their weights file (`--encoder-weights`) and the fine-tuning
controls (`--freeze-encoder-steps`, `--encoder-lr-multiplier`): trainer/encoders.py,
encoder_weights.py, weights_file.py, fine_tuning.py, components/encoder_trainer.py.

Weights files are saved here from randomly initialised applications (nothing can be downloaded):
the loader cannot tell them from ImageNet's, whose layout (layer names, weight order) is the same.
"""

import glob
import hashlib
import json
import os

import numpy as np
import pytest
import tf_keras

from iouseg import cli, run_summary
from trainer import continuation, encoder_weights, encoders, fine_tuning, task
from trainer.config import TrainerConfig
from trainer.weights_file import EncoderWeightsError

from helpers import TINY_CLASSES, recorded_artifacts, run_tiny_pipeline, tiny_run_args

SIZE, CLASSES, WIDTH = 32, 2, 2
BETA_1, BETA_2 = 0.9, 0.999  # tf_keras Adam's defaults


def application_file(path, encoder: str, channels: int = 3, seed: int = 1, **options) -> str:
  """A .h5 file of a randomly initialised `encoder` application without its top, as Keras caches
  ImageNet's; `options` go to the application (alpha=...)."""
  tf_keras.utils.set_random_seed(seed)
  builder = getattr(tf_keras.applications, encoders.APPLICATIONS[encoder].builder)
  application = builder(
    include_top=False, weights=None, input_shape=(None, None, channels), **options
  )
  application.save_weights(str(path), save_format='h5')
  return str(path)


def config(encoder: str, channels: int = 3, **flat) -> TrainerConfig:
  return TrainerConfig.from_flat(
    encoder=encoder,
    image_size=SIZE,
    num_classes=CLASSES,
    channels=channels,
    base_filters=WIDTH,
    **flat,
  )


def batch(channels: int, count: int = 2):
  """Random images with labels: class 1 where the first channel is positive."""
  images = np.random.RandomState(0).randn(count, SIZE, SIZE, channels).astype(np.float32)
  positive = images[..., 0] > 0
  labels = np.stack([~positive, positive], axis=-1).astype(np.float32)
  return images, labels, np.ones((count, SIZE, SIZE), np.float32)


def layer_weights(model) -> dict:
  return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


def same(a: dict, b: dict) -> bool:
  return a.keys() == b.keys() and all(
    len(a[k]) == len(b[k]) and all(np.array_equal(x, y) for x, y in zip(a[k], b[k], strict=True))
    for k in a
  )


def largest_step(before: list, after: list) -> float:
  return max(float(np.max(np.abs(b - a))) for a, b in zip(before, after, strict=True))


# --- every encoder trains, at any size its stride allows -----------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize('encoder', ['resnet50', 'efficientnet_b0'])
def test_an_encoder_trains_a_few_steps_and_takes_any_multiple_of_32(encoder):
  network = task.compiled_model(config(encoder, channels=1), total_steps=2)
  before = [w.numpy() for w in network.trainable_weights]
  images, labels, weights = batch(1)
  history = network.fit(images, labels, sample_weight=weights, epochs=2, verbose=0)
  assert np.all(np.isfinite(history.history['loss']))
  assert largest_step(before, [w.numpy() for w in network.trainable_weights]) > 0
  # Built without a fixed size (as crops and whole-image inference need), the same layers take
  # any multiple of the stride.
  anywhere = encoders.build_unet(encoder, None, 1, CLASSES, WIDTH)
  for size in (32, 96):
    assert anywhere(np.zeros((1, size, size, 1), np.float32)).shape == (1, size, size, CLASSES)


def test_the_size_check_asks_for_the_encoders_stride():
  with pytest.raises(ValueError) as refused:
    config('mobilenet_v2').replace(image_size=48)
  message = str(refused.value)
  assert 'multiple of 32' in message and '32 or 64' in message and 'encoder fcn' in message
  assert TrainerConfig.from_flat(image_size=48, depth=3).model.encoder == 'fcn'  # unchanged


# --- a weights file, and fine-tuning from it -----------------------------------------------------


@pytest.fixture(scope='module')
def fine_tuned(tmp_path_factory):
  """mobilenet_v2 from a weights file, frozen for 1 step, the encoder at 0.1 x the learning rate:
  every weight before the first step and after each of two steps."""
  path = application_file(tmp_path_factory.mktemp('weights') / 'mobilenet_v2.h5', 'mobilenet_v2')
  settings = config(
    'mobilenet_v2', encoder_weights=path, freeze_encoder_steps=1, encoder_lr_multiplier=0.1
  )
  file_weights = layer_weights(_loaded_application(path))
  network = task.compiled_model(settings, total_steps=2)
  record = encoder_weights.initialise(network, settings.model, 3)
  encoder = encoders.encoder_of(network)
  encoder_variables = list(encoder.trainable_weights)
  in_encoder = {w.ref() for w in encoder.weights}
  decoder = [w for w in network.trainable_weights if w.ref() not in in_encoder]
  snapshots = []

  class Record(tf_keras.callbacks.Callback):
    def snapshot(self):
      snapshots.append(
        {
          'encoder': layer_weights(encoder),
          'encoder_trainable': [w.numpy() for w in encoder_variables],
          'decoder': [w.numpy() for w in decoder],
        }
      )

    def on_train_begin(self, logs=None):
      self.snapshot()

    def on_train_batch_end(self, batch, logs=None):
      self.snapshot()

  images, labels, weights = batch(3)
  network.fit(
    images,
    labels,
    sample_weight=weights,
    batch_size=2,
    epochs=2,
    callbacks=[fine_tuning.EncoderFreeze(1), Record()],
    verbose=0,
  )
  return {
    'file': file_weights,
    'record': record,
    'path': path,
    'snapshots': snapshots,
    'lr': settings.optimizer.learning_rate,
  }


def _loaded_application(path: str):
  application = tf_keras.applications.MobileNetV2(
    include_top=False, weights=None, input_shape=(None, None, 3)
  )
  application.load_weights(path)  # Keras's own loader: what the file holds
  return application


@pytest.mark.slow
def test_a_weights_file_loads_into_the_encoder_bit_for_bit(fine_tuned):
  before = fine_tuned['snapshots'][0]['encoder']
  assert len(before) > 100
  assert same(before, fine_tuned['file'])
  with open(fine_tuned['path'], 'rb') as f:
    assert fine_tuned['record'].sha256 == hashlib.sha256(f.read()).hexdigest()


@pytest.mark.slow
def test_the_frozen_encoder_does_not_move_batch_norm_statistics_included(fine_tuned):
  start, frozen, thawed = fine_tuned['snapshots']
  assert same(frozen['encoder'], start['encoder'])  # moving means and variances too
  assert largest_step(start['decoder'], frozen['decoder']) > 0
  assert largest_step(frozen['encoder_trainable'], thawed['encoder_trainable']) > 0


@pytest.mark.slow
def test_the_encoder_steps_at_the_multiplied_learning_rate(fine_tuned):
  start, frozen, thawed = fine_tuned['snapshots']
  lr = fine_tuned['lr']
  # Adam's first step of a weight is lr * |g| / (|g| + eps): lr for every weight with a gradient.
  assert largest_step(start['decoder'], frozen['decoder']) == pytest.approx(lr, rel=1e-3)
  # The encoder's first step comes at iteration 2, where Adam's bias correction makes it
  # lr * sqrt(1 + beta_2) / (1 + beta_1), here times the multiplier 0.1.
  expected = 0.1 * lr * np.sqrt(1 + BETA_2) / (1 + BETA_1)
  step = largest_step(frozen['encoder_trainable'], thawed['encoder_trainable'])
  assert step == pytest.approx(expected, rel=1e-3)


def test_one_channel_input_takes_three_channel_weights(tmp_path):
  path = application_file(tmp_path / 'rgb.h5', 'mobilenet_v2')
  weights = encoder_weights.read(path)
  network = encoders.build_unet('mobilenet_v2', SIZE, 1, CLASSES, WIDTH)
  encoder = encoders.encoder_of(network)
  assert encoder_weights.load(encoder, weights, 'mobilenet_v2', 1) > 100
  # The stem's kernel summed over RGB (segmentation_models.pytorch's patch_first_conv): a grey
  # image gives the response an RGB image with three equal channels gave.
  kernel = weights.layers['Conv1'][0]
  assert np.array_equal(encoder.get_layer('Conv1').get_weights()[0], kernel.sum(2, keepdims=True))
  rest = {k: v for k, v in layer_weights(encoder).items() if k != 'Conv1'}
  assert same(rest, {k: weights.layers[k] for k in rest})
  grey = np.random.RandomState(1).rand(1, SIZE, SIZE, 1).astype(np.float32)
  assert np.all(np.isfinite(network(grey)))
  # Four channels: the RGB kernels repeated and scaled by 3/4.
  four = encoder_weights.adapt_stem_kernel(kernel, 4)
  assert np.array_equal(four, kernel[:, :, [0, 1, 2, 0]] * 0.75)


def test_the_input_map_gives_the_weights_their_scale():
  """Transform's z-score, read as ImageNet's, becomes each application's preprocess_input."""
  z = np.random.RandomState(2).randn(4, 3).astype(np.float64)
  pixels = 255 * (encoders.IMAGENET_MEAN + encoders.IMAGENET_STD * z)  # RGB, 0-255
  for encoder, module in (
    ('mobilenet_v2', tf_keras.applications.mobilenet_v2),
    ('resnet50', tf_keras.applications.resnet50),
  ):
    kernel, bias = encoders.input_map(encoder, 3)
    mapped = z @ kernel[0, 0] + bias
    expected = module.preprocess_input(pixels.copy())
    np.testing.assert_allclose(mapped, expected, rtol=1e-5, atol=1e-4)


# --- resume: a killed run continues from its backup ---------------------------------------------

EPOCHS, KILLED_AFTER = 3, 2  # one step an epoch


class Killed(Exception):
  """Stands for the kill: `fit` ends at an epoch's end, after the backup was written."""


@pytest.mark.slow
def test_a_resumed_run_continues_from_its_backup(tmp_path, capsys):
  """The Trainer's backup callback and fine-tuning controls on mobilenet_v2: a run killed after
  epoch 2 and started again, from other random weights, resumes with the weights and Adam state it
  had, at its step, the frozen step behind it, and trains only epoch 3."""
  settings = config('mobilenet_v2', freeze_encoder_steps=1, encoder_lr_multiplier=0.5)
  images, labels, weights = batch(3)
  state = {}

  def snapshot(network, name):
    state[name] = {
      'weights': layer_weights(network),
      'adam': [v.numpy() for v in network.optimizer.variables],
      'encoder_trainable': encoders.encoder_of(network).trainable,
    }

  class Kill(tf_keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
      if epoch + 1 == KILLED_AFTER:
        snapshot(self.model, 'killed')
        raise Killed

  class Resumed(tf_keras.callbacks.Callback):
    def on_train_begin(self, logs=None):  # after the backup's restore and the freeze's check
      snapshot(self.model, 'resumed')

  def train(seed, last):
    tf_keras.utils.set_random_seed(seed)
    network = task.compiled_model(settings, total_steps=EPOCHS)
    callbacks = [
      continuation.ResumableBackup(str(tmp_path / 'backup'), EPOCHS),
      fine_tuning.EncoderFreeze(settings.model.freeze_encoder_steps),
      last,
    ]
    history = network.fit(
      images, labels, sample_weight=weights, batch_size=2, epochs=EPOCHS, callbacks=callbacks
    )
    return network, history

  with pytest.raises(Killed):
    train(seed=0, last=Kill())
  network, history = train(seed=1, last=Resumed())
  killed, resumed = state['killed'], state['resumed']
  assert same(resumed['weights'], killed['weights'])  # the encoder's batch-norm statistics too
  assert len(resumed['adam']) == len(killed['adam']) > 100
  assert all(np.array_equal(a, b) for a, b in zip(resumed['adam'], killed['adam'], strict=True))
  assert int(network.optimizer.iterations) == EPOCHS  # the step went on from 2
  assert resumed['encoder_trainable']  # its 1 frozen step lies behind it: not frozen again
  assert len(history.history['loss']) == EPOCHS - KILLED_AFTER
  assert f'Resuming after epoch {KILLED_AFTER}/{EPOCHS}' in capsys.readouterr().out


# --- refused files: one line, before any step ----------------------------------------------------


@pytest.fixture(scope='module')
def files(tmp_path_factory):
  base = tmp_path_factory.mktemp('refused')
  good = application_file(base / 'mobilenet_v2.h5', 'mobilenet_v2')
  with open(good, 'rb') as f:
    content = f.read()
  truncated = base / 'truncated.h5'
  truncated.write_bytes(content[: len(content) // 2])
  return {
    'good': good,
    'narrow': application_file(base / 'mobilenet_v2_0.35.h5', 'mobilenet_v2', alpha=0.35),
    'truncated': str(truncated),
    'missing': str(base / 'nonexistent.h5'),
  }


def test_a_file_that_does_not_fit_is_refused_naming_it_and_the_layer(files):
  settings = config('mobilenet_v2', encoder_weights=files['narrow'])
  network = encoders.build_network(settings)
  before = layer_weights(network)
  with pytest.raises(EncoderWeightsError) as refused:
    encoder_weights.initialise(network, settings.model, 3)
  message = str(refused.value)
  assert '\n' not in message
  assert files['narrow'] in message and 'layer Conv1 ' in message, message
  assert same(layer_weights(network), before)  # nothing set


@pytest.mark.parametrize('kind,reason', [('truncated', 'truncated'), ('missing', 'no such file')])
def test_iouseg_run_refuses_a_bad_file_at_once(
  kind, reason, files, tiny_demo_data, tmp_path, capfd
):
  argv = tiny_run_args(tmp_path, tiny_demo_data, '--encoder', 'mobilenet_v2')
  returncode = cli.main(argv + ['--encoder-weights', files[kind]])
  out, err = capfd.readouterr()
  assert returncode == 2 and out == ''
  lines = err.strip().splitlines()
  assert len(lines) == 1 and 'Traceback' not in err, err
  assert lines[0].startswith(f'iouseg run: error: --encoder-weights {files[kind]}: '), lines[0]
  assert reason in lines[0]
  assert os.listdir(tmp_path) == []  # no pipeline root, log, serving dir or metadata


def test_the_kubeflow_spec_carries_the_encoder_settings(tmp_path):
  from test_kubeflow import compile_file

  from kubeflow import local_launcher

  flags = [
    '--encoder',
    'efficientnet_b0',
    '--encoder-weights',
    'gs://bucket/weights/efficientnet_b0_no_top.h5',
    '--freeze-encoder-steps',
    '50',
    '--encoder-lr-multiplier',
    '0.1',
  ]
  path = compile_file(tmp_path / 'pipeline.yaml', *flags)
  trainer = local_launcher.load_spec(str(path)).root.dag.tasks['Trainer']
  custom = json.loads(
    trainer.inputs.parameters['custom_config'].runtime_value.constant.string_value
  )
  assert custom['model']['encoder'] == 'efficientnet_b0'
  assert custom['model']['encoder_weights'] == 'gs://bucket/weights/efficientnet_b0_no_top.h5'
  assert custom['model']['freeze_encoder_steps'] == 50
  assert custom['optimizer']['encoder_lr_multiplier'] == 0.1


# --- one pipeline run ----------------------------------------------------------------------------


@pytest.fixture(scope='module')
def pipeline_run(tiny_demo_data, tmp_path_factory):
  base = tmp_path_factory.mktemp('encoder_run')
  path = application_file(base / 'mobilenet_v2_no_top.h5', 'mobilenet_v2')
  metadata = run_tiny_pipeline(
    base,
    tiny_demo_data,
    'encoders',
    train_steps=2,
    trainer_overrides={
      'encoder': 'mobilenet_v2',
      'encoder_weights': path,
      'freeze_encoder_steps': 1,
      'base_filters': WIDTH,
      'epochs': 1,
    },
  )
  with open(path, 'rb') as f:
    sha256 = hashlib.sha256(f.read()).hexdigest()
  return {'base': base, 'metadata': metadata, 'path': path, 'sha256': sha256}


@pytest.mark.e2e
def test_ml_metadata_the_summary_and_the_card_name_the_weights_file(pipeline_run):
  path, sha256 = pipeline_run['path'], pipeline_run['sha256']
  _, outputs, _ = recorded_artifacts(pipeline_run['metadata'], 'Trainer')
  model = outputs['model'][0]
  assert model.get_string_custom_property('encoder_weights') == path
  assert model.get_string_custom_property('encoder_weights_sha256') == sha256
  summary = run_summary.latest_run(pipeline_run['metadata'], 'encoders')
  assert summary.pushed  # the model evaluated and served like any other
  lines = run_summary.format_summary(summary).splitlines()
  assert f'Started from: encoder weights {path} (sha256 {sha256})' in lines
  (card,) = glob.glob(
    str(pipeline_run['base'] / 'serving' / '*' / 'assets.extra' / 'model_card.md')
  )
  with open(card, encoding='utf-8') as f:
    assert sha256 in f.read()


@pytest.mark.e2e
def test_the_exported_model_carries_its_encoder_for_fine_tuning(pipeline_run):
  from tfx.utils import path_utils

  _, outputs, _ = recorded_artifacts(pipeline_run['metadata'], 'Trainer')
  exported = path_utils.serving_model_path(outputs['model'][0].uri)
  trained = encoders.encoder_of(tf_keras.models.load_model(exported, compile=False))
  # The file beside the model is `--encoder-weights` input: it loads into a fresh encoder and
  # gives back the trained encoder's weights.
  weights = encoder_weights.read(os.path.join(exported, 'assets.extra', 'encoder_weights.h5'))
  fresh = encoders.build_encoder('mobilenet_v2', 3, SIZE)
  encoder_weights.load(fresh, weights, 'mobilenet_v2', 3)
  assert same(layer_weights(fresh), layer_weights(trained))


@pytest.mark.e2e
def test_a_warm_start_begins_from_the_exported_application_model(pipeline_run):
  """`continuation.warm_start`, as the Trainer calls it with `--warm-start`, on the model the
  Trainer exported: every weight of a fresh mobilenet_v2 network (encoder, input map, decoder,
  head) becomes the base model's."""
  from tfx.utils import path_utils

  _, outputs, _ = recorded_artifacts(pipeline_run['metadata'], 'Trainer')
  exported = path_utils.serving_model_path(outputs['model'][0].uri)
  base = layer_weights(tf_keras.models.load_model(exported, compile=False))
  network = task.compiled_model(
    TrainerConfig.from_flat(
      encoder='mobilenet_v2', image_size=SIZE, num_classes=TINY_CLASSES, base_filters=WIDTH
    )
  )
  assert not same(layer_weights(network), base)
  assert continuation.warm_start(network, exported)
  assert same(layer_weights(network), base)
