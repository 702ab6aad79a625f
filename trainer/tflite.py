"""An exported SavedModel as a TFLite file for the edge, and the interpreter that runs one.

The SavedModel's signatures take serialized `tf.Example`s holding PNG/JPEG bytes (trainer/export.py):
decoding and resizing are ops TFLite's builtin kernels lack, and an app on a device decodes its
camera frames itself. So the file takes what an app has and gives back what it draws:

- input `image`: float32 [1, S, S, C], pixel values 0..255, placed in the model input as Transform
  places them (`transform.preprocessing`: stretched to S x S, bilinear; with `--resize pad` the long
  side scaled to S at the top-left, zeros around);
- output `class_ids`: int32 [1, S, S], by the SavedModel's own rule (`trainer.decode.class_ids_tf`:
  the most probable foreground class where its sigmoid reaches the threshold, else background).

Transform's per-channel normalisation, (x - mean) / sqrt(var + eps) with the train split's
statistics, is folded in, so the file is self-contained. It lives only inside the SavedModel's
transform graph; `read_normalisation` reads it back by running the SavedModel's own
`transform_features` signature on constant images, so the file applies exactly what serving applies.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from trainer import decode, export
from transform import data_format, features

INPUT_NAME, OUTPUT_NAME = 'image', 'class_ids'
# The constant pixel values the normalisation is read at (two fix the map, the third checks it is
# affine), and how far a value may stray: across one probe image, in normalised units; for the
# third probe, as a fraction of what the 0..255 range maps to.
_PROBE_VALUES = (0, 255, 100)
_AFFINE_TOLERANCE = 1e-3


@dataclasses.dataclass(frozen=True)
class Normalisation:
  """Transform's image normalisation as normalised = pixels * scale + offset, per channel [C];
  `image_size`: the side S of the model input Transform places images in."""

  scale: np.ndarray
  offset: np.ndarray
  image_size: int

  def pixels(self, normalised: np.ndarray) -> np.ndarray:
    """The placed 0..255 image that Transform normalised to `normalised` ([..., C])."""
    return ((normalised - self.offset) / self.scale).astype(np.float32)


def _constant_record(value: int, size: int, channels: int) -> bytes:
  """A record in the project's format: a size x size image, `value` everywhere, mask background."""
  image = np.full((size, size) if channels == 1 else (size, size, channels), value, np.uint8)
  mask = np.zeros((size, size), np.uint8)
  return data_format.make_example(
    data_format.encode_png(image),
    'png',
    size,
    size,
    channels,
    'probe',
    data_format.encode_png(mask),
  ).SerializeToString()


def model_input(loaded) -> tuple[int, int]:
  """(S, C) of the images Transform gives the network of `loaded` (a `tf.saved_model.load`ed
  export); ValueError when they have no one square size (the file needs a fixed input)."""
  spec = loaded.signatures[export.TRANSFORM_SIGNATURE].structured_outputs[features.IMAGE]
  shape = tuple(getattr(spec, 'shape', ()))
  if len(shape) != 4 or shape[1] is None or shape[1] != shape[2]:
    raise ValueError(
      f'Transform gives the network images of shape {shape}: a TFLite file needs one square size'
    )
  return shape[1], shape[3]


def read_normalisation(loaded) -> Normalisation:
  """The normalisation of `loaded`, from its `transform_features` signature on constant images;
  ValueError when it is not one affine map per channel (the file would then not do what serving
  does)."""
  image_size, channels = model_input(loaded)
  transform = loaded.signatures[export.TRANSFORM_SIGNATURE]
  records = [_constant_record(value, image_size, channels) for value in _PROBE_VALUES]
  images = transform(examples=tf.constant(records))[features.IMAGE].numpy()
  # A constant image stays constant through the resize: one value per probe and channel.
  values = images.reshape(len(_PROBE_VALUES), -1, channels)
  if np.ptp(values, axis=1).max() > _AFFINE_TOLERANCE:
    raise ValueError('Transform does not map a constant image to a constant: not a normalisation')
  values = values[:, 0]
  low, high = _PROBE_VALUES[:2]
  scale = (values[1] - values[0]) / (high - low)
  offset = values[0] - low * scale
  expected = offset + _PROBE_VALUES[2] * scale
  if np.abs(values[2] - expected).max() > _AFFINE_TOLERANCE * np.abs(scale).max() * high:
    raise ValueError("Transform's image normalisation is not affine per channel")
  return Normalisation(scale.astype(np.float32), offset.astype(np.float32), image_size)


def edge_function(loaded, normalisation: Normalisation):
  """The function the file holds: placed 0..255 image [1, S, S, C] -> class ids [1, S, S], through
  the network `loaded` restores (its Keras call, in inference mode)."""
  size, channels = normalisation.image_size, len(normalisation.scale)
  scale, offset = tf.constant(normalisation.scale), tf.constant(normalisation.offset)

  @tf.function(input_signature=[tf.TensorSpec([1, size, size, channels], tf.float32, INPUT_NAME)])
  def segment(image):
    probabilities = loaded(image * scale + offset, training=False)
    return {OUTPUT_NAME: decode.class_ids_tf(probabilities)}

  return segment


def convert(loaded, normalisation: Normalisation, quantize: str, calibration_images=None) -> bytes:
  """The .tflite file's bytes, by TensorFlow's own converter. `quantize`: 'none' (float32),
  'float16' (weights stored as float16, computed in float32) or 'int8' (weights and activations
  int8, ranges calibrated on `calibration_images`, placed 0..255 images [S, S, C]; the input stays
  float32 and the output int32, so the three files are called alike).

  The concrete function is converted alone, its variables frozen to constants: handing the
  converter the SavedModel too makes it save every signature again first (21 s against 4 s for
  the demo model)."""
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
    [edge_function(loaded, normalisation).get_concrete_function()]
  )
  if quantize == 'float16':
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
  elif quantize == 'int8':
    if calibration_images is None or not len(calibration_images):
      raise ValueError('int8 quantisation needs calibration images')
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([image[None]] for image in calibration_images)
  elif quantize != 'none':
    raise ValueError(f'unknown quantisation {quantize!r}: none, float16 or int8')
  return converter.convert()


class EdgeModel:
  """A .tflite file from `convert` in `tf.lite.Interpreter`, one image a call."""

  def __init__(self, content: bytes, num_threads: int | None = None):
    self._interpreter = tf.lite.Interpreter(model_content=content, num_threads=num_threads)
    self._interpreter.allocate_tensors()
    (self._input,) = self._interpreter.get_input_details()
    (self._output,) = self._interpreter.get_output_details()

  def class_ids(self, image: np.ndarray) -> np.ndarray:
    """A placed 0..255 image [S, S, C] -> int32 class ids [S, S]."""
    self._interpreter.set_tensor(self._input['index'], np.asarray(image, np.float32)[None])
    self._interpreter.invoke()
    return self._interpreter.get_tensor(self._output['index'])[0]
