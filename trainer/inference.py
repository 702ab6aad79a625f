"""Predicting an image at its own size with a model trained on crops (`--resize none`).

Two ways, the Trainer's `inference` setting, exported with the model:
- `whole`: the network is fully convolutional, so it runs on the whole image at once, padded at the
  bottom and right to a multiple of its output stride (with 0, the channel mean of the normalised
  image) and the prediction cropped back. Memory grows with the image's pixels.
- `slide` (MMSegmentation's `slide_inference`): windows of the model's input size on a grid whose
  step leaves `overlap` of a window to its neighbour, the last window of a row or column moved back
  to end at the image's edge; the probabilities of the windows covering a pixel are averaged. A
  bounded number of windows runs at once, so the memory beyond the image and its probabilities does
  not grow with the image. An image smaller than a window is padded to one.

Any Keras model taking [B, H, W, C] normalised images and returning [B, H, W, K] probabilities works:
nothing here knows the network's layers beyond their output shapes.
"""

import dataclasses

import tensorflow as tf
import tf_keras


@dataclasses.dataclass(frozen=True)
class InferenceOptions:
  """How `native_probabilities` runs: `mode` 'whole' or 'slide'; a slide's `overlap` and how many
  windows it runs through the model at once."""

  mode: str = 'whole'
  overlap: float = 1 / 3
  windows_at_once: int = 4


def allow_any_size(model: tf_keras.Model) -> tf_keras.Model:
  """`model` (and the models nested in it), no longer refusing inputs of another height and width
  than it was built with: a functional model checks its inputs against its `Input` shape, which a
  fully-convolutional network does not need. Returns `model`."""
  for network in [model, *(sub for sub in model.submodules if isinstance(sub, tf_keras.Model))]:
    network.input_spec = None
  return model


def output_stride(model: tf_keras.Model) -> int:
  """The factor by which the network's coarsest feature map is smaller than its input (2**depth for
  the project's FCN): an input side must be a multiple of it. The input size itself when the layers'
  sizes say nothing simpler."""
  size = model.input_shape[1]
  sides = [size]
  for layer in model.layers:
    try:
      shapes = layer.output_shape
    except AttributeError:  # not in the network's graph (e.g. an attached Transform layer)
      continue
    for shape in shapes if isinstance(shapes, list) else [shapes]:
      if len(shape) == 4 and shape[1]:
        sides.append(shape[1])
  coarsest = min(sides)
  return size // coarsest if size % coarsest == 0 else size


def whole(model: tf_keras.Model, image, stride: int):
  """image [H, W, C] -> probabilities [H, W, K]: the model on the image padded to a multiple of
  `stride`, cropped back."""
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  padded = tf.pad(image, [[0, -height % stride], [0, -width % stride], [0, 0]])
  return tf.cast(allow_any_size(model)(padded[None]), tf.float32)[0, :height, :width]


def window_offsets(length, window: int, step: int):
  """int32 offsets of the windows along a side of `length` >= `window` pixels: every `step` pixels,
  the last moved back to end at the edge (MMSegmentation's grid)."""
  count = tf.maximum(length - window + step - 1, 0) // step + 1
  return tf.minimum(tf.range(count) * step, length - window)


def _coverage(length, offsets, window: int):
  """float32 [length]: how many windows cover each position."""
  positions = tf.range(length)[:, None]
  inside = (positions >= offsets[None, :]) & (positions < offsets[None, :] + window)
  return tf.reduce_sum(tf.cast(inside, tf.float32), axis=1)


def slide(model: tf_keras.Model, image, overlap: float, windows_at_once: int):
  """image [H, W, C] -> probabilities [H, W, K]: the model on windows of its input size, the
  probabilities of overlapping windows averaged; `windows_at_once` windows at a time."""
  window = model.input_shape[1]
  num_classes = model.output_shape[-1]
  channels = image.shape[-1]
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  padded = tf.pad(
    image, [[0, tf.maximum(window - height, 0)], [0, tf.maximum(window - width, 0)], [0, 0]]
  )
  rows, cols = tf.shape(padded)[0], tf.shape(padded)[1]
  step = max(1, round(window * (1 - overlap)))
  ys, xs = window_offsets(rows, window, step), window_offsets(cols, window, step)
  corners = tf.reshape(tf.stack(tf.meshgrid(ys, xs, indexing='ij'), axis=-1), [-1, 2])
  span = tf.range(window)

  def body(start, sums):
    batch = corners[start : start + windows_at_once]
    windows = tf.map_fn(
      lambda corner: tf.slice(padded, [corner[0], corner[1], 0], [window, window, channels]),
      batch,
      fn_output_signature=tf.TensorSpec([window, window, channels], image.dtype),
    )
    probabilities = tf.cast(model(windows), tf.float32)
    # Each window's pixels' (row, column) in the padded image, [n, window, window, 2].
    at_rows = tf.broadcast_to(
      (batch[:, 0, None] + span)[:, :, None], [tf.shape(batch)[0], window, window]
    )
    at_cols = tf.broadcast_to(
      (batch[:, 1, None] + span)[:, None, :], [tf.shape(batch)[0], window, window]
    )
    indices = tf.stack([at_rows, at_cols], axis=-1)
    return start + windows_at_once, tf.tensor_scatter_nd_add(sums, indices, probabilities)

  _, sums = tf.while_loop(
    lambda start, _: start < tf.shape(corners)[0],
    body,
    (tf.constant(0), tf.zeros([rows, cols, num_classes])),
    parallel_iterations=1,
  )
  # The windows covering a pixel: those covering its row times those covering its column.
  counts = _coverage(rows, ys, window)[:, None] * _coverage(cols, xs, window)[None, :]
  return (sums / counts[..., None])[:height, :width]


def native_probabilities(model: tf_keras.Model, image, options: InferenceOptions):
  """One normalised image [H, W, C] at its own size -> probabilities [H, W, K] at that size."""
  if options.mode == 'slide':
    return slide(model, image, options.overlap, options.windows_at_once)
  return whole(model, image, output_stride(model))
