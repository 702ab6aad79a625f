"""Predicting an image at its own size with a model trained on crops (`--resize none`).

Two ways, the Trainer's `inference` setting, exported with the model:
- `whole`: the network is fully convolutional, so it runs on the whole image at once, padded at the
  bottom and right to a multiple of its output stride (with 0, the channel mean of the normalised
  image) and the prediction cropped back. Memory grows with the image's pixels.
- `slide` (MMSegmentation's `slide_inference`): windows of the model's input size on a grid whose
  step leaves `overlap` of a window to its neighbour, the last window of a row or column moved back
  to end at the image's edge; the probabilities of the windows covering a pixel are averaged. A
  bounded number of windows runs at once, one row of the grid at a time, and the rows no later
  window covers are finished then (`slide_bands`): beyond the image and (for `slide`, which returns
  them) its probabilities, what is held grows with the image's width, not its pixels. An image
  smaller than a window is padded to one. Given the image as decoded (uint8) and a `normalise`
  function, the slide normalises each window as it cuts it, so no normalised copy of the whole
  image exists either (`trainer.native_export.pixel_map`).

`native_bands` hands either prediction out in bands of rows, for what needs only sums over the
pixels (the Evaluator's `evaluation_sums`, `trainer.native_export`): with `slide` the whole image's
probabilities are then never held.

Any Keras model taking [B, H, W, C] normalised images and returning [B, H, W, K] probabilities works:
nothing here knows the network's layers beyond their output shapes. `normalise` (default: the image
is normalised already) maps pixels of the image's dtype to the model's float32 input, pixel by
pixel.
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


def already_normalised(image):
  """The `normalise` of an image that is the model's input already."""
  return image


def whole(model: tf_keras.Model, image, stride: int, normalise=already_normalised):
  """image [H, W, C] -> probabilities [H, W, K]: the model on the image padded to a multiple of
  `stride`, cropped back."""
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  padded = tf.pad(normalise(image), [[0, -height % stride], [0, -width % stride], [0, 0]])
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


def _window(image, top, left, window: int, normalise):
  """The window x window window of `image` at (top, left), normalised, then padded with 0 where
  it lies beyond an image smaller than a window: padding after normalising, as the whole
  normalised image would have been padded."""
  piece = normalise(image[top : top + window, left : left + window])
  shape = tf.shape(piece)
  return tf.pad(piece, [[0, window - shape[0]], [0, window - shape[1]], [0, 0]])


def slide_bands(
  model: tf_keras.Model,
  image,
  overlap: float,
  windows_at_once: int,
  consume,
  state,
  normalise=already_normalised,
):
  """The slide over image [H, W, C], handed out as it finishes, one band of rows at a time:
  `state = consume(state, band, top)` for each band [h, W, K] of averaged probabilities whose first
  row is `top`, top to bottom, the bands covering the image once. Returns the last state.

  The windows run one row of the grid at a time, `windows_at_once` at once, into a sum of `window`
  rows (where that grid row's windows and the earlier ones still overlap); the rows no later window
  covers are averaged and handed out, and the sum moves down. Each window is normalised as it is
  cut. Beyond the image, what is held grows with its width, never with its pixels."""
  window = model.input_shape[1]
  num_classes = model.output_shape[-1]
  channels = image.shape[-1]
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  # The grid covers the image padded to at least a window each way (with 0: the normalised mean).
  rows, cols = tf.maximum(height, window), tf.maximum(width, window)
  step = max(1, round(window * (1 - overlap)))
  ys, xs = window_offsets(rows, window, step), window_offsets(cols, window, step)
  # Where each grid row's finished band ends: the next grid row's top, the last at the bottom.
  band_ends = tf.concat([ys[1:], [rows]], axis=0)
  # The windows covering a pixel: those covering its row times those covering its column.
  row_counts, col_counts = _coverage(rows, ys, window), _coverage(cols, xs, window)
  span = tf.range(window)

  def add_grid_row(top, sums):
    """sums [window, cols, K] (its first row is `top`) plus the grid row's windows at `top`."""

    def body(start, sums):
      lefts = xs[start : start + windows_at_once]
      windows = tf.map_fn(
        lambda left: _window(image, top, left, window, normalise),
        lefts,
        fn_output_signature=tf.TensorSpec([window, window, channels], tf.float32),
      )
      probabilities = tf.cast(model(windows), tf.float32)
      # Each window's pixels' (row in sums, column), [n, window, window, 2].
      shape = [tf.shape(lefts)[0], window, window]
      at_rows = tf.broadcast_to(span[None, :, None], shape)
      at_cols = tf.broadcast_to((lefts[:, None] + span)[:, None, :], shape)
      indices = tf.stack([at_rows, at_cols], axis=-1)
      return start + windows_at_once, tf.tensor_scatter_nd_add(sums, indices, probabilities)

    _, sums = tf.while_loop(
      lambda start, _: start < tf.shape(xs)[0], body, (tf.constant(0), sums), parallel_iterations=1
    )
    return sums

  def grid_row(k, sums, state):
    top, end = ys[k], band_ends[k]
    sums = add_grid_row(top, sums)
    done = end - top
    counts = row_counts[top:end, None] * col_counts[None, :]
    band = sums[:done] / counts[..., None]
    # Only the image's own pixels leave (a small image was padded to a window).
    state = consume(state, band[: tf.maximum(tf.minimum(end, height) - top, 0), :width], top)
    # Move down by `done` rows: the finished ones out, zeros in at the bottom.
    keep = tf.cast(span < window - done, tf.float32)[:, None, None]
    return k + 1, tf.roll(sums, -done, axis=0) * keep, state

  _, _, state = tf.while_loop(
    lambda k, *_: k < tf.shape(ys)[0],
    grid_row,
    (tf.constant(0), tf.zeros([window, cols, num_classes]), state),
    parallel_iterations=1,
  )
  return state


def whole_bands(
  model: tf_keras.Model,
  image,
  stride: int,
  consume,
  state,
  band_rows: int,
  normalise=already_normalised,
):
  """`whole`'s prediction handed to `consume` as `slide_bands` hands its bands, `band_rows` rows at
  a time (the prediction itself is made at once)."""
  probabilities = whole(model, image, stride, normalise)

  def body(top, state):
    return top + band_rows, consume(state, probabilities[top : top + band_rows], top)

  _, state = tf.while_loop(
    lambda top, _: top < tf.shape(probabilities)[0],
    body,
    (tf.constant(0), state),
    parallel_iterations=1,
  )
  return state


def concatenated(bands, per_band, dtype, depth_shape):
  """What `bands(consume, state) -> state` (`native_bands` with its other arguments given) hands
  out, each band through `per_band` ([h, W, K] -> [h, W, *depth_shape] of `dtype`), concatenated
  top to bottom: the bands, then the whole once (TensorArray.concat)."""
  array = tf.TensorArray(
    dtype,
    size=0,
    dynamic_size=True,
    infer_shape=False,
    element_shape=tf.TensorShape([None, None, *depth_shape]),
  )
  array = bands(lambda array, band, _: array.write(array.size(), per_band(band)), array)
  return array.concat()


def slide(
  model: tf_keras.Model, image, overlap: float, windows_at_once: int, normalise=already_normalised
):
  """image [H, W, C] -> probabilities [H, W, K]: the model on windows of its input size, the
  probabilities of overlapping windows averaged; `windows_at_once` windows at a time."""
  return concatenated(
    lambda consume, state: slide_bands(
      model, image, overlap, windows_at_once, consume, state, normalise
    ),
    already_normalised,
    tf.float32,
    [model.output_shape[-1]],
  )


def native_probabilities(
  model: tf_keras.Model, image, options: InferenceOptions, normalise=already_normalised
):
  """One image [H, W, C] at its own size -> probabilities [H, W, K] at that size."""
  if options.mode == 'slide':
    return slide(model, image, options.overlap, options.windows_at_once, normalise)
  return whole(model, image, output_stride(model), normalise)


def native_bands(
  model: tf_keras.Model,
  image,
  options: InferenceOptions,
  consume,
  state,
  normalise=already_normalised,
):
  """`native_probabilities` handed to `consume(state, band, top) -> state` in bands of rows, top to
  bottom (`slide_bands`): what needs only the class ids or sums over the pixels (`masks`, the
  Evaluator's `evaluation_sums`) never holds the whole prediction with `slide`. `whole`'s bands are
  a window high."""
  if options.mode == 'slide':
    return slide_bands(
      model, image, options.overlap, options.windows_at_once, consume, state, normalise
    )
  return whole_bands(
    model, image, output_stride(model), consume, state, model.input_shape[1], normalise
  )
