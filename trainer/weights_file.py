"""A Keras .h5 weights file read whole, checked and hashed, without TensorFlow for a local path
(so `iouseg run` checks `--encoder-weights` before it imports TensorFlow or writes anything);
`trainer.encoder_weights` puts what it holds into an encoder."""

import dataclasses
import hashlib
import io

import h5py
import numpy as np

# The group a whole-model `model.save('x.h5')` keeps its weights under.
_MODEL_WEIGHTS_GROUP = 'model_weights'


class EncoderWeightsError(ValueError):
  """A weights file that is missing, unreadable or does not fit the encoder; one line."""


@dataclasses.dataclass(frozen=True)
class WeightsFile:
  """What a weights file holds: {layer name: [arrays in the layer's weight order]}, its sha256."""

  path: str
  sha256: str
  layers: dict


def read(path: str) -> WeightsFile:
  """Every weight of the .h5 file at `path` (local or a URI tf.io.gfile reads). EncoderWeightsError
  for a missing file, one that is not HDF5, truncated or holds no Keras weights."""
  try:
    content = _content(path)
    with h5py.File(io.BytesIO(content), 'r') as h5:
      root = h5[_MODEL_WEIGHTS_GROUP] if _MODEL_WEIGHTS_GROUP in h5 else h5
      if 'layer_names' not in root.attrs:
        raise EncoderWeightsError(
          f'encoder_weights {path}: an HDF5 file but not Keras weights (no layer_names); save '
          'them with model.save_weights("x.h5")'
        )
      layers = {}
      for name in _names(root.attrs['layer_names']):
        group = root[name]
        layers[name] = [np.asarray(group[w]) for w in _names(group.attrs.get('weight_names', []))]
  except EncoderWeightsError:
    raise
  except (OSError, KeyError, ValueError) as error:  # h5py's
    reason = ' '.join(str(error).split())
    raise EncoderWeightsError(
      f'encoder_weights {path}: not a readable Keras .h5 weights file (truncated or damaged?): '
      f'{reason}'
    ) from None
  return WeightsFile(path, hashlib.sha256(content).hexdigest(), layers)


def _names(values) -> list[str]:
  return [v.decode('utf-8') if isinstance(v, bytes) else str(v) for v in values]


def _content(path: str) -> bytes:
  """The file's bytes; a URI (gs://...) through TensorFlow's file systems."""
  if '://' not in path:
    try:
      with open(path, 'rb') as f:
        return f.read()
    except FileNotFoundError:
      raise EncoderWeightsError(f'encoder_weights {path}: no such file') from None
  import tensorflow as tf

  if not tf.io.gfile.exists(path):
    raise EncoderWeightsError(f'encoder_weights {path}: no such file')
  with tf.io.gfile.GFile(path, 'rb') as f:
    return f.read()
