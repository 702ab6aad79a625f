"""Transform's `preprocessing_fn`: raw records -> normalised images, one-hot labels, pixel weights.

Referenced by import path (`transform.preprocessing.preprocessing_fn`); its settings come from the
Transform component's `custom_config` (see `transform.config.TransformConfig`).
"""

import tensorflow as tf
import tensorflow_transform as tft

from transform import data_format, features
from transform.config import TransformConfig

# Keeps the normalisation finite for a constant channel (e.g. a blank synthetic set).
VARIANCE_EPSILON = 1e-6
# Rows of `label_position_sums` per class (named in `trainer.lateral.STAT_ROWS`).
POSITION_ROWS = 9


def content_size(height, width, image_size: int, resize: str):
  """(rows, cols), int32: the size of an HxW image's content inside the SxS model input, at its
  top-left corner. The one definition of the geometry: Transform places images with it, and the
  exported model crops its prediction with it before resizing back to the image's own size."""
  if resize == 'stretch':
    return tf.constant(image_size, tf.int32), tf.constant(image_size, tf.int32)
  height, width = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
  scale = image_size / tf.maximum(height, width)

  def scaled(side):
    return tf.clip_by_value(tf.cast(tf.round(side * scale), tf.int32), 1, image_size)

  return scaled(height), scaled(width)


def _place(image, config: TransformConfig, method: str, pad_value):
  """[H, W, C] -> ([S, S, C] resized to the content size and padded with `pad_value` to SxS,
  bool [S, S] True on the content)."""
  rows, cols = content_size(
    tf.shape(image)[0], tf.shape(image)[1], config.image_size, config.resize
  )
  resized = tf.image.resize(image, [rows, cols], method=method, antialias=method == 'bilinear')
  size = config.image_size
  placed = tf.pad(resized, [[0, size - rows], [0, size - cols], [0, 0]], constant_values=pad_value)
  positions = tf.range(size)
  return placed, (positions[:, None] < rows) & (positions[None, :] < cols)


def decode_image_and_content(encoded, config: TransformConfig):
  """PNG/JPEG bytes (1, 3 or 4 channels) -> (float32 [S, S, channels] in [0, 255], bilinear resize,
  0 where padded; bool [S, S] True on the image's content)."""
  image = tf.io.decode_image(encoded, channels=config.channels, expand_animations=False)
  image, content = _place(tf.cast(image, tf.float32), config, 'bilinear', 0.0)
  size = [config.image_size, config.image_size]
  return tf.ensure_shape(image, size + [config.channels]), tf.ensure_shape(content, size)


def decode_image(encoded, config: TransformConfig):
  """The image of `decode_image_and_content`."""
  return decode_image_and_content(encoded, config)[0]


def decode_mask(encoded, config: TransformConfig):
  """Single-channel PNG of class ids -> int32 [S, S], nearest-neighbour resize (no invented ids);
  padding is the ignore label.

  Serving requests carry no mask: the Transform layer then feeds empty bytes for it, and the label
  outputs (which serving never reads) must still compute, so empty bytes give an all-ignore mask.
  Training records without a mask never get here: the schema requires the feature.
  """
  size = [config.image_size, config.image_size]

  def decode():
    mask = tf.cast(tf.io.decode_png(encoded, channels=1, dtype=tf.uint8), tf.int32)
    return _place(mask, config, 'nearest', config.ignore_label)[0][..., 0]

  mask = tf.cond(
    tf.strings.length(encoded) > 0,
    decode,
    lambda: tf.fill(size, tf.constant(config.ignore_label, tf.int32)),
  )
  return tf.ensure_shape(mask, size)


def _check_labels(masks, filenames, config: TransformConfig):
  """An op that fails the Transform run, naming the records, when a mask holds an unknown class id."""
  known = (masks < config.num_classes) | (masks == config.ignore_label)
  bad_record = tf.logical_not(tf.reduce_all(known, axis=[1, 2]))
  return tf.debugging.Assert(
    tf.logical_not(tf.reduce_any(bad_record)),
    [
      f'Label mask holds class ids outside [0, {config.num_classes}) that are not the ignore label '
      f'{config.ignore_label}; records:',
      tf.boolean_mask(filenames, bad_record),
      'largest id per bad record:',
      tf.boolean_mask(tf.reduce_max(masks, axis=[1, 2]), bad_record),
    ],
    summarize=20,
  )


def label_position_sums(labels, content):
  """Per record, float32 [B, 9, K]: for each class, its pixel count and the sums of x, x^2, y, y^2
  and of the pixels left of, right of, above and below the centre (rows `trainer.lateral.STAT_ROWS`).
  x and y are a pixel centre over the width and height of the image's content (0..1 whatever the
  resize mode); `labels` are one-hot [B, S, S, K] with ignored pixels all-zero, so they count
  nowhere."""
  content = tf.cast(content, tf.float32)
  rows = tf.maximum(tf.reduce_sum(content[:, :, 0], axis=1), 1.0)  # content height, [B]
  cols = tf.maximum(tf.reduce_sum(content[:, 0, :], axis=1), 1.0)
  # The grid's own height and width: S x S (static), or an image at its own size (resize 'none').
  height = labels.shape[1] if labels.shape[1] is not None else tf.shape(labels)[1]
  width = labels.shape[2] if labels.shape[2] is not None else tf.shape(labels)[2]
  x = (tf.range(width, dtype=tf.float32) + 0.5)[None, :] / cols[:, None]  # by column
  y = (tf.range(height, dtype=tf.float32) + 0.5)[None, :] / rows[:, None]  # by row

  # Per-column and per-row class counts first (two passes over the one-hot grid); every sum below
  # is then over [B, W, K] or [B, H, K]. Eight einsums over the grid itself made this analyzer
  # most of Transform's time at 512 px, 21 classes (docs/performance.md, Scale).
  per_column = tf.reduce_sum(labels, axis=1)  # [B, W, K]
  per_row = tf.reduce_sum(labels, axis=2)  # [B, H, K]

  def by_column(values):
    return tf.einsum('bwk,bw->bk', per_column, values)

  def by_row(values):
    return tf.einsum('bhk,bh->bk', per_row, values)

  def below(values):
    return tf.cast(values < 0.5, tf.float32)

  def above(values):
    return tf.cast(values > 0.5, tf.float32)

  return tf.stack(
    [
      tf.reduce_sum(per_column, axis=1),
      by_column(x),
      by_column(x * x),
      by_row(y),
      by_row(y * y),
      by_column(below(x)),
      by_column(above(x)),
      by_row(below(y)),
      by_row(above(y)),
    ],
    axis=1,
  )


def _flat(x):
  """Raw features arrive as [B] or [B, 1] depending on the schema; the ops below want [B]."""
  return tf.reshape(x, [-1])


def _one_hot_and_weight(masks, config: TransformConfig):
  """Class-id masks -> (one-hot labels, ignored pixels all-zero rows; weights, 0 where ignored)."""
  ignored = tf.equal(masks, config.ignore_label)
  # one_hot of -1 is an all-zero row: ignored pixels belong to no class.
  labels = tf.one_hot(tf.where(ignored, -1, masks), config.num_classes, dtype=tf.float32)
  return labels, 1.0 - tf.cast(ignored, tf.float32)


def _decode_native_image(encoded, config: TransformConfig):
  """resize 'none': one image at its own size, float32 [H, W, C] in [0, 255], as a ragged
  [H, (W), C] (a batch of them is ragged)."""
  image = tf.cast(
    tf.io.decode_image(encoded, channels=config.channels, expand_animations=False), tf.float32
  )
  image.set_shape([None, None, config.channels])
  return tf.RaggedTensor.from_tensor(image)


def _decode_native_mask(encoded, config: TransformConfig):
  """resize 'none': one mask at its own size, int32 [H, (W)] ragged. Empty bytes (a request
  without a mask, whose label nothing reads) give an empty mask."""
  mask = tf.cond(
    tf.strings.length(encoded) > 0,
    lambda: tf.cast(tf.io.decode_png(encoded, channels=1, dtype=tf.uint8)[..., 0], tf.int32),
    lambda: tf.zeros([0, 0], tf.int32),
  )
  return tf.RaggedTensor.from_tensor(mask)


def _native_positions(mask, config: TransformConfig):
  """One mask at its own size (ragged [H, (W)]) -> its label position sums [9, K]."""
  mask = mask.to_tensor(default_value=config.ignore_label)
  labels = _one_hot_and_weight(mask, config)[0]
  return label_position_sums(labels[None], tf.ones_like(mask, tf.bool)[None])[0]


def _native_outputs(inputs, config: TransformConfig):
  """resize 'none': every image at its own size, so a batch of records is ragged: image, label and
  weight are RaggedTensors [B, (H), (W), ...] (TFT exports them as ragged features); the Trainer
  feeds the graph one record at a time and cuts crops of the model size (`trainer.crops`)."""
  channels = config.channels
  # Image and mask in maps of their own: the Transform layer drops every output that depends on a
  # feature a request lacks, and serving requests carry no mask.
  images = tf.map_fn(
    lambda encoded: _decode_native_image(encoded, config),
    _flat(inputs[data_format.IMAGE_ENCODED]),
    fn_output_signature=tf.RaggedTensorSpec([None, None, channels], tf.float32, ragged_rank=1),
  )
  masks = tf.map_fn(
    lambda encoded: _decode_native_mask(encoded, config),
    _flat(inputs[data_format.MASK_ENCODED]),
    fn_output_signature=tf.RaggedTensorSpec([None, None], tf.int32, ragged_rank=1),
  )
  # Every pixel of every train image, each once (flat_values: no padding exists).
  pixels = images.flat_values
  mean = tft.mean(pixels, reduce_instance_dims=False)
  variance = tft.var(pixels, reduce_instance_dims=False)
  outputs = {
    features.IMAGE: tf.ragged.map_flat_values(
      lambda values: (values - mean) * tf.math.rsqrt(variance + VARIANCE_EPSILON), images
    )
  }
  # Padded with the ignore label only for the check: padding holds no unknown id.
  dense = masks.to_tensor(default_value=config.ignore_label)
  with tf.control_dependencies(
    [_check_labels(dense, _flat(inputs[data_format.IMAGE_FILENAME]), config)]
  ):
    flat_masks = tf.identity(masks.flat_values)
  labels, weights = _one_hot_and_weight(flat_masks, config)
  outputs[features.LABEL] = masks.with_flat_values(labels)
  outputs[features.WEIGHT] = masks.with_flat_values(weights)
  # Only the analyzer reads the per-record sums: the exported graph holds their total, a constant,
  # so serving and training never compute them.
  positions = tf.map_fn(
    lambda mask: _native_positions(mask, config),
    masks,
    fn_output_signature=tf.TensorSpec([POSITION_ROWS, config.num_classes], tf.float32),
  )
  totals = tf.reshape(tft.sum(positions, reduce_instance_dims=False), [1, -1])
  outputs[features.LABEL_POSITIONS] = tf.zeros([masks.nrows(), 1]) + totals
  return outputs


def preprocessing_fn(inputs, custom_config):
  config = TransformConfig(**(custom_config or {}))
  if config.resize == 'none':
    return _native_outputs(inputs, config)
  images, content = tf.map_fn(
    lambda b: decode_image_and_content(b, config),
    _flat(inputs[data_format.IMAGE_ENCODED]),
    fn_output_signature=(tf.float32, tf.bool),
  )
  # Per-channel mean and variance over every pixel of the train split (a TFT full pass); padding
  # is no pixel of any image, so it does not count.
  pixels = (
    tf.reshape(images, [-1, config.channels])
    if config.resize == 'stretch'
    else tf.boolean_mask(images, content)
  )
  mean = tft.mean(pixels, reduce_instance_dims=False)
  variance = tft.var(pixels, reduce_instance_dims=False)
  outputs = {features.IMAGE: (images - mean) * tf.math.rsqrt(variance + VARIANCE_EPSILON)}

  masks = tf.map_fn(
    lambda b: decode_mask(b, config),
    _flat(inputs[data_format.MASK_ENCODED]),
    fn_output_signature=tf.int32,
  )
  with tf.control_dependencies(
    [_check_labels(masks, _flat(inputs[data_format.IMAGE_FILENAME]), config)]
  ):
    masks = tf.identity(masks)
  outputs[features.LABEL], outputs[features.WEIGHT] = _one_hot_and_weight(masks, config)
  # A full pass over the train split: where each class lies, for the Trainer's lateral-class guard
  # (trainer.lateral). Exported as a constant of the graph, one copy per record.
  positions = tft.sum(
    label_position_sums(outputs[features.LABEL], content), reduce_instance_dims=False
  )
  outputs[features.LABEL_POSITIONS] = tf.zeros_like(images[:, :1, 0, 0]) + tf.reshape(
    positions, [1, -1]
  )
  return outputs
