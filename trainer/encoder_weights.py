"""`--encoder-weights`: an application encoder's initial weights from a Keras .h5 weights file.

The file is one `tf_keras.applications` caches without its top
(`~/.keras/models/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5`, ...), any
`save_weights` .h5 of that application, or `assets.extra/encoder_weights.h5`, which this project's
Trainer writes beside every exported application model (`save`). Nothing is ever downloaded: the
file is a local path or a URI TensorFlow's file system reads (gs://...).

The weights go in layer by layer by name (the application's own layer names, which every such file
keeps), each weight's shape checked; the first layer that does not fit stops the run with one line
naming the file and the layer (`EncoderWeightsError`), before any step. A file with 3-channel
weights initialises an encoder of another channel count as segmentation_models.pytorch's
`patch_first_conv` does: for 1 channel the stem kernel summed over RGB (a grey image then gives the
response an RGB image of equal channels gave); for N > 3 the RGB kernels repeated (channel c takes
RGB channel c % 3) and scaled by 3 / N. EfficientNet's `normalization` layer is not read from the
file: Keras's ImageNet file stores the standard deviation where the layer wants the variance
(tensorflow/tensorflow#49930), and `trainer.encoders` sets that layer to ImageNet's statistics
itself.
"""

import json
import os
import tempfile

import numpy as np
import tensorflow as tf
import tf_keras

from trainer import encoders
from trainer.weights_file import EncoderWeightsError, WeightsFile, read

# Beside an exported application model: its encoder, for `--encoder-weights`.
EXPORTED_FILE = 'encoder_weights.h5'
# Beside every exported model: the weights file its encoder started from.
RECORD_FILE = 'encoder_weights.json'


def adapt_stem_kernel(kernel: np.ndarray, channels: int) -> np.ndarray:
  """A [k, k, 3, F] kernel for `channels` input channels, as `patch_first_conv` adapts it (module
  docstring); other kernels unchanged."""
  if kernel.shape[2] != 3 or channels == 3:
    return kernel
  if channels == 1:
    return kernel.sum(axis=2, keepdims=True)
  return kernel[:, :, np.arange(channels) % 3] * (3 / channels)


def _fitted(layer, values: list, stem: bool, channels: int):
  """`values` for `layer`, the stem's kernel adapted; None when they do not fit."""
  if stem and values:
    values = [adapt_stem_kernel(values[0], channels), *values[1:]]
  shapes = [tuple(w.shape) for w in layer.weights]
  if len(values) != len(shapes) or any(v.shape != s for v, s in zip(values, shapes, strict=True)):
    return None
  return values


def load(encoder: tf_keras.Model, weights: WeightsFile, encoder_name: str, channels: int) -> int:
  """Sets every weight of `encoder` (a `trainer.encoders.build_encoder` model) from `weights`;
  the number of layers set. EncoderWeightsError naming the file and the first layer that does not
  fit; nothing is set then."""
  stem = encoders.APPLICATIONS[encoder_name].stem
  fitted = []
  for layer in encoder.layers:
    if not layer.weights or encoders.input_normalization(layer):
      continue
    if layer.name not in weights.layers:
      raise EncoderWeightsError(
        f'encoder_weights {weights.path} do not fit encoder {encoder_name}: its layer '
        f'{layer.name} is not in the file (is it a {encoder_name} file?)'
      )
    values = _fitted(layer, weights.layers[layer.name], layer.name == stem, channels)
    if values is None:
      theirs = [v.shape for v in weights.layers[layer.name]]
      raise EncoderWeightsError(
        f'encoder_weights {weights.path} do not fit encoder {encoder_name}: layer {layer.name} '
        f'has weights {theirs} in the file, {[tuple(w.shape) for w in layer.weights]} here'
      )
    fitted.append((layer, values))
  for layer, values in fitted:
    layer.set_weights(values)
  return len(fitted)


def initialise(network: tf_keras.Model, model_config, channels: int) -> WeightsFile | None:
  """Loads `model_config.encoder_weights` into the encoder of `network` and says so; None (doing
  nothing) without a file."""
  if not model_config.encoder_weights:
    return None
  weights = read(model_config.encoder_weights)
  count = load(encoders.encoder_of(network), weights, model_config.encoder, channels)
  print(
    f'Encoder weights: {count} layers from {weights.path} (sha256 {weights.sha256})', flush=True
  )
  return weights


def save(network: tf_keras.Model, serving_model_dir: str) -> str | None:
  """Writes the encoder of an application `network` to `assets.extra/EXPORTED_FILE` under
  `serving_model_dir`, as `--encoder-weights` reads it; its path, or None for the FCN."""
  encoder = encoders.encoder_of(network)
  if encoder is None:
    return None
  path = os.path.join(serving_model_dir, 'assets.extra', EXPORTED_FILE)
  tf.io.gfile.makedirs(os.path.dirname(path))
  with (
    tempfile.TemporaryDirectory() as folder
  ):  # h5py writes local files only; the dir may be gs://
    local = os.path.join(folder, EXPORTED_FILE)
    encoder.save_weights(local, save_format='h5')
    tf.io.gfile.copy(local, path, overwrite=True)
  return path


def write_record(serving_model_dir: str, weights: WeightsFile | None) -> None:
  """assets.extra/RECORD_FILE beside the model: the weights file the encoder started from (path
  and sha256), or null; the Trainer's model artifact, the model card and the run summary read it."""
  path = os.path.join(serving_model_dir, 'assets.extra', RECORD_FILE)
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.gfile.GFile(path, 'w') as f:
    json.dump({'encoder_weights': weights and {'path': weights.path, 'sha256': weights.sha256}}, f)


def read_record(model_dir: str) -> dict | None:
  """{'path', 'sha256'} of the weights file the model at `model_dir` started from; None when it
  started from none (or predates the record)."""
  path = os.path.join(model_dir, 'assets.extra', RECORD_FILE)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f).get('encoder_weights')
