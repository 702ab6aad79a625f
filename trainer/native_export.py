"""The signatures of a model trained on crops of images kept at their own size (`--resize none`);
`trainer.export` names them and documents what each returns.

Every signature takes one example at a time and predicts it at its own size with
`trainer.inference` (the Trainer's `inference` setting, `whole` or `slide`): an image at its own
size is the unit of memory. There is no model-size copy of the image, so `model_resolution` returns
`serving_default`'s outputs and `confusion_matrix_model_resolution` equals `confusion_matrix`;
`transform_features` pads the batch to its largest image (weight 0).

`evaluation_sums` never holds a per-pixel tensor of the classes over the whole image: it takes the
prediction in bands of rows as `trainer.inference.native_bands` hands them out and counts each band
against the same rows of the record's mask, one-hot encoded there; `masks` turns each band into
class ids. With `slide` the whole image's probabilities never exist there; with `whole` they do
(the network's activations at full size dwarf them).

The image is normalised by the exported transform graph's own pixel map (`pixel_map`), window by
window with `slide`: a normalised float32 copy of the whole image (4 bytes a pixel and channel,
against the decoded image's 1) never exists.
"""

import numpy as np
import tensorflow as tf
import tf_keras

from trainer import decode, inference, iou, losses
from trainer import signature_common as common
from transform import data_format, features


def dense(tensor):
  """A Transform output of a `resize='none'` graph (ragged: images keep their sizes) as a dense
  tensor padded with zeros (weight 0, all-zero label rows)."""
  return tensor.to_tensor() if isinstance(tensor, tf.RaggedTensor) else tensor


def _in_turn(fn, examples, output_specs):
  """fn(one serialized example) for each, one after the other, concatenated."""
  return common.in_chunks(fn, examples, 1, output_specs)


def _transformed_images(tft_layer, encoded, image_shape=()):
  """The Transform layer's normalised images of encoded images [N], alone (the layer leaves out
  every output a request's features do not make, here the label and weight), padded to the
  largest; `image_shape` is the schema's shape of the image feature (a pipeline's schema makes it
  [1]), the shape the layer takes."""
  encoded = tf.reshape(encoded, [-1, *image_shape])
  return dense(tft_layer({data_format.IMAGE_ENCODED: encoded})[features.IMAGE])


def _probe_images(channels: int) -> list:
  """uint8 images on which `pixel_map` reads and checks the transform graph's map: the first holds
  every value in every channel at 3 places, each time beside other values in the other channels;
  the second, of another size and other statistics, random values."""
  rows = np.arange(256)[:, None, None]
  first = (rows + 85 * np.arange(3)[None, :, None] + 37 * np.arange(channels)) % 256
  second = np.random.default_rng(0).integers(0, 256, (9, 13, channels))
  return [first.astype(np.uint8), second.astype(np.uint8)]


def pixel_map(tft_layer, channels: int, image_shape=()):
  """float32 [256, C]: what the transform graph (its Keras layer) makes of each uint8 value in each
  of the image's `channels`, or None when the graph is not such a map, pixel by pixel and channel by
  channel, on the probe images (`_probe_images`).

  `--resize none`'s graph normalises each channel, (x - mean) * rsqrt(var + eps) with TFT's
  statistics, so the signatures can normalise a window at a time instead of the whole image at
  once. They read the map out of the exported graph at export time, rather than rebuilding it from
  its constants: a table of the graph's own outputs is exact to the bit (the same float
  arithmetic), needs no formula the graph might one day stop following, and any graph that is not a
  per-pixel map (say, one normalising each image by its own statistics) fails the check and keeps
  the whole image through the Transform layer (`_image_and_normalise`). `image_shape`: as
  `_transformed_images`'."""
  probes = _probe_images(channels)
  outputs = [
    _transformed_images(tft_layer, tf.constant([tf.io.encode_png(probe).numpy()]), image_shape)[
      0
    ].numpy()
    for probe in probes
  ]
  table = np.zeros((256, channels), np.float32)
  for c in range(channels):
    table[probes[0][:, 0, c], c] = outputs[0][:, 0, c]
  for probe, output in zip(probes, outputs):
    if output.shape != probe.shape or not np.array_equal(table[probe, np.arange(channels)], output):
      return None
  return table


def table_normalise(table):
  """fn(uint8 pixels [..., C]) -> float32: `table`'s entry of each pixel's value in its channel."""
  channels = table.shape[1]
  flat = tf.constant(table.reshape(-1))
  return lambda pixels: tf.gather(flat, tf.cast(pixels, tf.int32) * channels + tf.range(channels))


def _image_and_normalise(model, raw, table):
  """(image, normalise) of one parsed raw example for `trainer.inference`: with the transform
  graph's pixel map `table`, the image as the graph decodes it (uint8 [H, W, C], `--channels`
  channels) and the map; else (None) the Transform layer's normalised image [H, W, C]."""
  encoded = common.flat(raw, data_format.IMAGE_ENCODED)
  if table is None:
    image_shape = raw[data_format.IMAGE_ENCODED].shape[1:]
    return _transformed_images(model.tft_layer, encoded, image_shape)[
      0
    ], inference.already_normalised
  image = tf.io.decode_image(encoded[0], channels=table.shape[1], expand_animations=False)
  return image, table_normalise(table)


def _prediction(model, raw, options: inference.InferenceOptions, table):
  """Probabilities [H, W, K] at the image's own size of one parsed raw example."""
  image, normalise = _image_and_normalise(model, raw, table)
  return inference.native_probabilities(model, image, options, normalise)


def serving_fn(model: tf_keras.Model, tf_transform_output, options, table):
  """`serving_default`: each image predicted at its own size by `options` (normalised by `table`,
  `pixel_map`'s), the batch padded to its largest image."""
  num_classes = model.output_shape[-1]
  keep = {data_format.IMAGE_ENCODED}

  @tf.function(input_signature=common.EXAMPLES_SPEC)
  def serving_default(examples):
    encoded = common.flat(
      common.parse_raw(examples, tf_transform_output, keep_keys=keep), data_format.IMAGE_ENCODED
    )
    sizes = tf.map_fn(
      lambda e: tf.shape(tf.io.decode_image(e, expand_animations=False))[:2],
      encoded,
      fn_output_signature=tf.int32,
    )
    largest = tf.reduce_max(sizes, axis=0)

    def one(example):
      raw = common.parse_raw(example, tf_transform_output, keep_keys=keep)
      probabilities = _prediction(model, raw, options, table)[None]
      return (tf.image.pad_to_bounding_box(probabilities, 0, 0, largest[0], largest[1]),)

    (probabilities,) = _in_turn(
      one, examples, (tf.TensorSpec([None, None, num_classes], tf.float32),)
    )
    return common.serving_outputs(probabilities, sizes)

  return serving_default


def model_resolution_fn(serving_default):
  """`model_resolution`: the model's resolution is the image's own."""

  @tf.function(input_signature=common.EXAMPLES_SPEC)
  def model_resolution(examples):
    outputs = serving_default(examples)
    return {key: outputs[key] for key in ('probabilities', 'class_ids')}

  return model_resolution


def transform_features_fn(model: tf_keras.Model, tf_transform_output):
  """`transform_features`: the graph's ragged outputs padded to the batch."""

  @tf.function(input_signature=common.EXAMPLES_SPEC)
  def transform_features(examples):
    transformed = model.tft_layer(common.parse_raw(examples, tf_transform_output))
    return {key: dense(value) for key, value in transformed.items()}

  return transform_features


def band_sums(sums, probabilities, true_ids, num_classes: int):
  """`sums` (confusion matrix int64 [C, C], soft IoU I and U float64) plus one band's: its
  probabilities [h, W, C] against its rows of the mask, true_ids int32 [h, W], one-hot encoded as
  Transform encodes the label (the ignore label: an all-zero row of weight 0). Masks hold only class
  ids and the ignore label (the RecordValidator and Transform check it), so `< num_classes` is the
  label's weight."""
  matrix, intersection, union = sums
  valid = true_ids < num_classes
  labels = tf.one_hot(tf.where(valid, true_ids, -1), num_classes, dtype=tf.float32)
  band_matrix = iou.confusion_matrices_tf(
    true_ids[None], decode.class_ids_tf(probabilities)[None], valid[None], num_classes
  )[0]
  band_intersection, band_union = losses.soft_iou_sums(
    labels, probabilities, tf.cast(valid, tf.float32), dtype=tf.float64
  )
  return matrix + band_matrix, intersection + band_intersection, union + band_union


def evaluation_sums_fn(model: tf_keras.Model, tf_transform_output, options, table):
  """`evaluation_sums`, one example at a time at its own size, band by band (the module's
  docstring): both confusion matrices are the native one."""
  num_classes = model.output_shape[-1]

  def one(example):
    raw = common.parse_raw(example, tf_transform_output)
    true_ids = common.mask_ids(common.flat(raw, data_format.MASK_ENCODED)[0])

    def consume(sums, band, top):
      rows = true_ids[top : top + tf.shape(band)[0]]
      return band_sums(sums, band, tf.cast(rows, tf.int32), num_classes)

    zero = tf.constant(0.0, tf.float64)
    image, normalise = _image_and_normalise(model, raw, table)
    matrix, intersection, union = inference.native_bands(
      model,
      image,
      options,
      consume,
      (tf.zeros([num_classes, num_classes], tf.int64), zero, zero),
      normalise,
    )
    return matrix[None], matrix[None], intersection[None], union[None]

  @tf.function(input_signature=common.EXAMPLES_SPEC)
  def evaluation_sums(examples):
    outputs = _in_turn(one, examples, common.sum_specs(num_classes))
    return dict(zip(common.SUM_NAMES, outputs))

  return evaluation_sums


def native_class_ids(model: tf_keras.Model, image, options, normalise):
  """uint8 [H, W] class ids of `image` at its own size (`trainer.inference.native_bands`' bands
  decoded one at a time): with `slide` the whole image's probabilities never exist, only its class
  ids, a byte a pixel. Class ids fit a byte: num_classes <= the ignore label <= 255
  (data_format.check_label_settings)."""
  return inference.concatenated(
    lambda consume, state: inference.native_bands(model, image, options, consume, state, normalise),
    lambda band: tf.cast(decode.class_ids_tf(band), tf.uint8),
    tf.uint8,
    [],
  )


def png_of(model: tf_keras.Model, tf_transform_output, options, table):
  """fn(one encoded image, [1]) -> ([1] PNG of its class ids at its own size, [1, 2] that size):
  the `masks` signature's per-chunk step."""
  image_shape = tf_transform_output.raw_feature_spec()[data_format.IMAGE_ENCODED].shape

  def one(images):
    raw = {data_format.IMAGE_ENCODED: tf.reshape(images, [-1, *image_shape])}
    image, normalise = _image_and_normalise(model, raw, table)
    class_ids = native_class_ids(model, image, options, normalise)
    png = tf.io.encode_png(class_ids[..., None])
    return png[None], tf.shape(class_ids)[None]

  return one
