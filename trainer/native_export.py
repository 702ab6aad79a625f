"""The signatures of a model trained on crops of images kept at their own size (`--resize none`);
`trainer.export` names them and documents what each returns.

Every signature takes one example at a time and predicts it at its own size with
`trainer.inference` (the Trainer's `inference` setting, `whole` or `slide`): an image at its own
size is the unit of memory. There is no model-size copy of the image, so `model_resolution` returns
`serving_default`'s outputs and `confusion_matrix_model_resolution` equals `confusion_matrix`;
`transform_features` pads the batch to its largest image (weight 0).

`evaluation_sums` never holds a per-pixel tensor of the classes over the whole image: it takes the
prediction in bands of rows as `trainer.inference.native_bands` hands them out and counts each band
against the same rows of the record's mask, one-hot encoded there. With `slide` the whole image's
probabilities never exist; with `whole` they do (the network's activations at full size dwarf them).
"""

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


def _normalised_image(model, raw):
  """The transformed image [H, W, C] of one parsed raw example, alone: the Transform layer leaves
  out every output a request's features do not make (here the label and weight)."""
  image_only = {data_format.IMAGE_ENCODED: raw[data_format.IMAGE_ENCODED]}
  return dense(model.tft_layer(image_only)[features.IMAGE])[0]


def _prediction(model, raw, options: inference.InferenceOptions):
  """Probabilities [H, W, K] at the image's own size of one parsed raw example."""
  return inference.native_probabilities(model, _normalised_image(model, raw), options)


def serving_fn(model: tf_keras.Model, tf_transform_output, options):
  """`serving_default`: each image predicted at its own size by `options`, the batch padded to its
  largest image."""
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
      probabilities = _prediction(model, raw, options)[None]
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


def evaluation_sums_fn(model: tf_keras.Model, tf_transform_output, options):
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
    matrix, intersection, union = inference.native_bands(
      model,
      _normalised_image(model, raw),
      options,
      consume,
      (tf.zeros([num_classes, num_classes], tf.int64), zero, zero),
    )
    return matrix[None], matrix[None], intersection[None], union[None]

  @tf.function(input_signature=common.EXAMPLES_SPEC)
  def evaluation_sums(examples):
    outputs = _in_turn(one, examples, common.sum_specs(num_classes))
    return dict(zip(common.SUM_NAMES, outputs))

  return evaluation_sums


def png_of(model: tf_keras.Model, tf_transform_output, options):
  """fn(one encoded image, [1]) -> ([1] PNG of its class ids at its own size, [1, 2] that size):
  the `masks` signature's per-chunk step."""
  image_shape = tf_transform_output.raw_feature_spec()[data_format.IMAGE_ENCODED].shape

  def one(images):
    raw = {data_format.IMAGE_ENCODED: tf.reshape(images, [-1, *image_shape])}
    class_ids = decode.class_ids_tf(_prediction(model, raw, options))
    png = tf.io.encode_png(tf.cast(class_ids, tf.uint8)[..., None])
    return png[None], tf.shape(class_ids)[None]

  return one
