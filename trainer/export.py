"""The exported SavedModel's signatures.

- `serving_default`: serialized `tf.Example`s holding at least `image/encoded` (PNG or JPEG) ->
  `probabilities` [B, H, W, C] and `class_ids` [B, H, W] at each input image's own resolution, plus
  its `height` and `width`. Images of different sizes in one batch are padded (zeros) to the
  largest.
- `model_resolution`: serialized examples -> `probabilities` and `class_ids` at the model's input
  size, aligned pixel for pixel with the transformed label.
- `transform_features`: serialized examples -> the transformed features (`image`, one-hot `label`,
  pixel `weight`).
- `evaluation_sums` (what the Evaluator runs): serialized raw examples, image and mask -> per
  example only counts and sums, nothing per pixel: `confusion_matrix` (int64 [B, C, C], rows ground
  truth, columns prediction) at the image's own resolution, i.e. `serving_default`'s class ids
  against the record's mask decoded at its own size; `confusion_matrix_model_resolution` (int64
  [B, C, C]), the model-size prediction against the transformed label; `soft_iou_intersection` and
  `soft_iou_union` (float64 [B]), the soft IoU loss's I and U at the model's resolution
  (`losses.soft_iou_sums`). Pixels of the ignore label (and, with `resize='pad'`, the padding)
  count nowhere. TFMA adds these up (`components.iou_metric`).
- `class_presence` (the Evaluator's preprocessing function; its class-presence slices read it):
  serialized raw examples -> `class_presence` (int64 [B, C]): 1 where the mask, at its own size,
  holds a pixel of class c.
- `masks` (what batch inference runs, `components.mask_writer`): serialized examples holding at
  least `image/encoded` -> `masks` (string [B, 1]: per example a PNG of its uint8 class ids at the
  image's own size, `serving_default`'s `class_ids` cropped to the image), `filename` (string
  [B, 1]: `image/filename`, '' when the record has none), `height`, `width` (int32 [B]), `error`
  (string [B, 1]: '' when the mask was made, else why not: the image is missing or does not decode,
  or has a channel count other than 1, 3 or 4; such a record gets an empty mask and size 0x0 while
  the rest of the batch is segmented, so one bad record does not fail a batch job). Every
  output has the batch first and an array per example because TFX's BulkInferrer (tfx_bsl's predict
  handler) splits each output along the batch into a TensorProto per PredictionLog; nothing per
  pixel leaves the model as floats.

`serving_default`, `evaluation_sums` and `masks` bring the prediction back to the image's size with
one function, `to_native_resolution`, so the Evaluator scores exactly what serving returns.

With `resize='none'` (a model trained on crops of images kept at their own size) every signature
takes one example at a time and predicts it at its own size (`trainer.native_export`, with the
Trainer's `inference` setting, `whole` or `slide`). Such a model also has `serving_whole` and
`serving_slide` (`serving_default` with either mode, for TF Serving clients) and `masks_whole` and
`masks_slide` (`masks` with either mode, what `iouseg predict --inference` runs).

One builder function per signature returns its `tf.function` (here for a model of a fixed input
size, in `trainer.native_export` for `resize='none'`); `add_signatures` attaches the Transform layer
to the model and collects them.
"""

import dataclasses

import numpy as np
import tensorflow as tf
import tf_keras

from trainer import config as trainer_config
from trainer import decode, inference, iou, losses, native_export
from trainer import signature_common as common

# The outputs of EVALUATION_SIGNATURE, named in trainer.signature_common (both families return
# them); callers read them here, beside the signatures' names.
from trainer.signature_common import (  # noqa: F401  (re-exported)
  CONFUSION_MATRIX,
  CONFUSION_MATRIX_MODEL_RESOLUTION,
  SOFT_IOU_INTERSECTION,
  SOFT_IOU_UNION,
)
from transform import data_format, features, preprocessing

SERVING_SIGNATURE = 'serving_default'
MODEL_RESOLUTION_SIGNATURE = 'model_resolution'
TRANSFORM_SIGNATURE = 'transform_features'
EVALUATION_SIGNATURE = 'evaluation_sums'
PRESENCE_SIGNATURE = 'class_presence'
MASKS_SIGNATURE = 'masks'
# The outputs of MASKS_SIGNATURE.
MASKS, FILENAME, HEIGHT, WIDTH, ERROR = 'masks', 'filename', 'height', 'width', 'error'
# The channel counts an input image may have (grayscale, RGB, RGBA), as the converter accepts.
IMAGE_CHANNELS = (1, 3, 4)
UNDECODABLE = 'the image is missing or does not decode as PNG or JPEG'
# The output of PRESENCE_SIGNATURE.
CLASS_PRESENCE = 'class_presence'


def serving_signature(mode: str) -> str:
  """The name of a `resize='none'` model's `serving_default` with inference `mode`."""
  return f'serving_{mode}'


def masks_signature(mode: str) -> str:
  """The name of a `resize='none'` model's `masks` with inference `mode`."""
  return f'masks_{mode}'


# What `evaluation_sums` may hold at once of per-pixel float32 tensors at the model's resolution.
EVALUATION_BATCH_BYTES = 256 * 2**20


def to_native_resolution(probabilities, height, width, image_size: int, resize: str):
  """One example's probabilities [S, S, C] at the model's input size -> [height, width, C] at the
  image's own size: the image's content inside the model input (`preprocessing.content_size`, at the
  top-left; all of it for 'stretch') cropped out, then resized bilinearly."""
  rows, cols = preprocessing.content_size(height, width, image_size, resize)
  return tf.image.resize(probabilities[:rows, :cols], tf.stack([height, width]), method='bilinear')


def _resize_to_inputs(probabilities, encoded_images, image_size: int, resize: str):
  """Each example's probabilities at its own image size, padded to the batch max."""

  def size_of(encoded):
    return tf.shape(tf.io.decode_image(encoded, expand_animations=False))[:2]

  sizes = tf.map_fn(size_of, encoded_images, fn_output_signature=tf.int32)
  max_size = tf.reduce_max(sizes, axis=0)

  def resize_one(args):
    probs, size = args
    resized = to_native_resolution(probs, size[0], size[1], image_size, resize)
    return tf.image.pad_to_bounding_box(resized, 0, 0, max_size[0], max_size[1])

  resized = tf.map_fn(resize_one, (probabilities, sizes), fn_output_signature=tf.float32)
  return resized, sizes


def native_mask(encoded):
  """A record's mask at its own size: int32 [H, W] class ids, decoded as Transform decodes it."""
  return tf.cast(common.mask_ids(encoded), tf.int32)


def activations_per_pixel(model: tf_keras.Model) -> float:
  """The floats every layer of `model` outputs (input and probabilities included), per pixel of its
  input: an upper bound of what one example holds during inference, as if nothing were freed."""
  total = 0
  for layer in model.layers:
    try:
      shapes = layer.output_shape
    except AttributeError:  # not in the network's graph (e.g. an attached Transform layer)
      continue
    shapes = shapes if isinstance(shapes, list) else [shapes]
    total += sum(int(np.prod(shape[1:])) for shape in shapes)
  return total / (model.input_shape[1] * model.input_shape[2])


def evaluation_batch_size(
  image_size: int, num_classes: int, activations: float, budget_bytes: int = EVALUATION_BATCH_BYTES
) -> int:
  """How many examples `evaluation_sums` runs through Transform and the model at once, chosen by
  bytes: as many as fit `budget_bytes` of float32 per-pixel tensors at the model's resolution, at
  least 1. Per pixel of the S x S input one example holds the network's `activations` (from
  `activations_per_pixel`) plus the one-hot label (C) and the pixel weight (1).

  TFMA 0.47's default PredictionsExtractor runs the signature on whatever batch its input source
  made (Beam's BatchElements, up to 1000 records) and ignores `ModelSpec.inference_batch_size`, so
  the signature bounds its own memory: it walks the batch in chunks of this size. The
  native-resolution step after the model runs one image at a time.
  """
  per_example = 4 * image_size * image_size * (activations + num_classes + 1)
  return max(1, int(budget_bytes // per_example))


def _predict(model: tf_keras.Model, raw):
  """The model's probabilities [B, S, S, C] at its input size for parsed raw examples."""
  return model(model.tft_layer(raw)[features.IMAGE])


def _native_confusion(probabilities, encoded_mask, image_size: int, num_classes: int, resize: str):
  """One example: the prediction at the mask's (= the image's) size against the mask."""
  true_ids = native_mask(encoded_mask)
  size = tf.shape(true_ids)
  pred_ids = decode.class_ids_tf(
    to_native_resolution(probabilities, size[0], size[1], image_size, resize)
  )
  # Masks hold only class ids and the ignore label (the RecordValidator and Transform check it).
  return iou.confusion_matrices_tf(
    true_ids[None], pred_ids[None], true_ids[None] < num_classes, num_classes
  )[0]


def _present_classes(encoded_mask, num_classes: int):
  """One example: int64 [C], 1 where its mask at its own size holds a pixel of class c."""
  ids = native_mask(encoded_mask)
  counts = tf.math.bincount(
    tf.boolean_mask(ids, ids < num_classes),
    minlength=num_classes,
    maxlength=num_classes,
    dtype=tf.int64,
  )
  return tf.cast(counts > 0, tf.int64)


def _native_png(probabilities, encoded_image, image_size: int, resize: str):
  """One example: `serving_default`'s class ids at the image's own size, as a PNG, and that size."""
  size = tf.shape(tf.io.decode_image(encoded_image, expand_animations=False))[:2]
  class_ids = decode.class_ids_tf(
    to_native_resolution(probabilities, size[0], size[1], image_size, resize)
  )
  # Class ids fit a byte: num_classes <= the ignore label <= 255 (data_format.check_label_settings).
  return tf.io.encode_png(tf.cast(class_ids, tf.uint8)[..., None]), size


def _serving_default_fn(model: tf_keras.Model, tf_transform_output, resize: str):
  """`serving_default`: probabilities and class ids at each image's own size."""
  image_size = model.input_shape[1]

  @tf.function(input_signature=common.EXAMPLES_SPEC)
  def serving_default(examples):
    raw = common.parse_raw(examples, tf_transform_output, keep_keys={data_format.IMAGE_ENCODED})
    probabilities, sizes = _resize_to_inputs(
      _predict(model, raw), common.flat(raw, data_format.IMAGE_ENCODED), image_size, resize
    )
    return common.serving_outputs(probabilities, sizes)

  return serving_default


def _model_resolution_fn(model: tf_keras.Model, tf_transform_output):
  """`model_resolution`: probabilities and class ids at the model's input size."""

  @tf.function(input_signature=common.EXAMPLES_SPEC)
  def model_resolution(examples):
    raw = common.parse_raw(examples, tf_transform_output, keep_keys={data_format.IMAGE_ENCODED})
    probabilities = _predict(model, raw)
    return {'probabilities': probabilities, 'class_ids': decode.class_ids_tf(probabilities)}

  return model_resolution


def _transform_features_fn(model: tf_keras.Model, tf_transform_output):
  """`transform_features`: the Transform's outputs for raw examples."""

  @tf.function(input_signature=common.EXAMPLES_SPEC)
  def transform_features(examples):
    return model.tft_layer(common.parse_raw(examples, tf_transform_output))

  return transform_features


def _evaluation_sums_fn(model: tf_keras.Model, tf_transform_output, resize: str, chunk_size: int):
  """`evaluation_sums`: per example the confusion matrices at the image's and the model's size and
  the soft IoU's sums, `chunk_size` examples through Transform and the model at a time."""
  image_size = model.input_shape[1]
  num_classes = model.output_shape[-1]

  def chunk_sums(examples):
    raw = common.parse_raw(examples, tf_transform_output)
    transformed = model.tft_layer(raw)
    probabilities = model(transformed[features.IMAGE])
    labels, weights = transformed[features.LABEL], transformed[features.WEIGHT]
    model_matrices = iou.confusion_matrices_tf(
      tf.argmax(labels, axis=-1), decode.class_ids_tf(probabilities), weights > 0, num_classes
    )
    intersection, union = losses.soft_iou_sums(
      labels, probabilities, weights, axis=[1, 2, 3], dtype=tf.float64
    )
    native_matrices = tf.map_fn(
      lambda args: _native_confusion(*args, image_size, num_classes, resize),
      (probabilities, common.flat(raw, data_format.MASK_ENCODED)),
      fn_output_signature=tf.TensorSpec([num_classes, num_classes], tf.int64),
      parallel_iterations=1,
    )
    return native_matrices, model_matrices, intersection, union

  @tf.function(input_signature=common.EXAMPLES_SPEC)
  def evaluation_sums(examples):
    outputs = common.in_chunks(chunk_sums, examples, chunk_size, common.sum_specs(num_classes))
    return dict(zip(common.SUM_NAMES, outputs))

  return evaluation_sums


def _class_presence_fn(tf_transform_output, num_classes: int):
  """`class_presence`: which classes each example's mask holds."""

  @tf.function(input_signature=common.EXAMPLES_SPEC)
  def class_presence(examples):
    raw = common.parse_raw(examples, tf_transform_output, keep_keys={data_format.MASK_ENCODED})
    return {
      CLASS_PRESENCE: tf.map_fn(
        lambda encoded: _present_classes(encoded, num_classes),
        common.flat(raw, data_format.MASK_ENCODED),
        fn_output_signature=tf.TensorSpec([num_classes], tf.int64),
      )
    }

  return class_presence


def image_errors(encoded_images):
  """Per image ([B] encoded bytes) '' if it decodes with 1, 3 or 4 channels, else the reason.

  A graph has no try/except: the images are decoded in a tf.data pipeline whose `ignore_errors`
  drops the ones that fail, and the indices that come through are the decodable ones."""
  count = tf.size(encoded_images)
  channels = (
    tf.data.Dataset.from_tensor_slices((tf.range(count), encoded_images))
    .map(lambda i, e: (i, tf.shape(tf.io.decode_image(e, expand_animations=False))[-1]))
    .ignore_errors()
    .reduce(
      tf.fill([count], -1),
      lambda state, found: tf.tensor_scatter_nd_update(state, [[found[0]]], [found[1]]),
    )
  )
  accepted = tf.reduce_any(channels[:, None] == tf.constant(IMAGE_CHANNELS)[None], axis=1)
  wrong_channels = tf.strings.join(
    [
      'the image has ',
      tf.strings.as_string(channels),
      ' channels, expected ' + ', '.join(map(str, IMAGE_CHANNELS[:-1])),
      f' or {IMAGE_CHANNELS[-1]}',
    ]
  )
  return tf.where(channels < 0, UNDECODABLE, tf.where(accepted, '', wrong_channels))


# What a bad record's image is replaced with so that the batch runs: one black pixel.
_PLACEHOLDER_PNG = data_format.encode_png(np.zeros((1, 1), np.uint8))


def _masks_fn(
  model: tf_keras.Model, tf_transform_output, resize: str, chunk_size: int, chunk_masks=None
):
  """`masks`: per example a PNG of its class ids at the image's own size, its filename and size,
  and '' or why its image could not be segmented. `chunk_masks` (a `resize='none'` model's, one
  image at a time) replaces the model-size prediction resized back."""
  image_size = model.input_shape[1]
  png_specs = (tf.TensorSpec([], tf.string), tf.TensorSpec([2], tf.int32))
  image_shape = tf_transform_output.raw_feature_spec()[data_format.IMAGE_ENCODED].shape

  def resized_masks(images):
    raw = {data_format.IMAGE_ENCODED: tf.reshape(images, [-1, *image_shape])}
    return tf.map_fn(
      lambda args: _native_png(*args, image_size, resize),
      (_predict(model, raw), images),
      fn_output_signature=png_specs,
      parallel_iterations=1,
    )

  chunk_masks = chunk_masks or resized_masks

  @tf.function(input_signature=common.EXAMPLES_SPEC)
  def masks(examples):
    parsed = tf.io.parse_example(
      examples,
      {
        key: tf.io.FixedLenFeature([], tf.string, default_value='')
        for key in (data_format.IMAGE_ENCODED, data_format.IMAGE_FILENAME)
      },
    )
    errors = image_errors(parsed[data_format.IMAGE_ENCODED])
    good = tf.equal(errors, '')
    images = tf.where(good, parsed[data_format.IMAGE_ENCODED], _PLACEHOLDER_PNG)
    # BulkInferrer hands the signature whatever batch Beam made (up to thousands of records): walk
    # it in chunks of the same size as evaluation_sums (which also holds the label: an upper bound).
    pngs, sizes = common.in_chunks(chunk_masks, images, chunk_size, png_specs)
    sizes = tf.where(good[:, None], sizes, 0)
    return {
      MASKS: tf.where(good, pngs, '')[:, None],
      FILENAME: parsed[data_format.IMAGE_FILENAME][:, None],
      HEIGHT: sizes[:, 0],
      WIDTH: sizes[:, 1],
      ERROR: errors[:, None],
    }

  return masks


def _native_signatures(model, tf_transform_output, options) -> dict:
  """Every signature of a `resize='none'` model (`trainer.native_export`): `serving_default` and
  `masks` by `options.mode`, `serving_<mode>` and `masks_<mode>` by either mode."""
  num_classes = model.output_shape[-1]
  image_shape = tf_transform_output.raw_feature_spec()[data_format.IMAGE_ENCODED].shape
  table = native_export.pixel_map(model.tft_layer, model.input_shape[-1], image_shape)
  serving = {
    mode: native_export.serving_fn(
      model, tf_transform_output, dataclasses.replace(options, mode=mode), table
    )
    for mode in trainer_config.INFERENCE_MODES
  }
  masks = {
    mode: _masks_fn(
      model,
      tf_transform_output,
      'none',
      1,
      native_export.png_of(
        model, tf_transform_output, dataclasses.replace(options, mode=mode), table
      ),
    )
    for mode in trainer_config.INFERENCE_MODES
  }
  return {
    SERVING_SIGNATURE: serving[options.mode],
    **{serving_signature(mode): function for mode, function in serving.items()},
    MODEL_RESOLUTION_SIGNATURE: native_export.model_resolution_fn(serving[options.mode]),
    TRANSFORM_SIGNATURE: native_export.transform_features_fn(model, tf_transform_output),
    EVALUATION_SIGNATURE: native_export.evaluation_sums_fn(
      model, tf_transform_output, options, table
    ),
    PRESENCE_SIGNATURE: _class_presence_fn(tf_transform_output, num_classes),
    MASKS_SIGNATURE: masks[options.mode],
    **{masks_signature(mode): function for mode, function in masks.items()},
  }


def add_signatures(
  model: tf_keras.Model,
  tf_transform_output,
  resize: str = 'stretch',
  evaluation_batch_bytes: int = EVALUATION_BATCH_BYTES,
  inference_mode: str = 'whole',
  slide_overlap: float = 1 / 3,
) -> dict:
  """Signatures for `model.save(..., signatures=...)`; attaches the Transform layer to the model.

  `resize` is the Transform's `TransformConfig.resize` ('stretch', 'pad' or 'none'): how images were
  placed in the model input, so how predictions go back to each image's own size.
  `evaluation_batch_bytes`: see `evaluation_batch_size`; with 'none' it bounds the windows a slide
  runs at once. `inference_mode` and `slide_overlap` (the Trainer's `inference` settings): how a
  'none' model predicts an image at its own size (`trainer.inference`).
  """
  num_classes = model.output_shape[-1]
  chunk_size = evaluation_batch_size(
    model.input_shape[1], num_classes, activations_per_pixel(model), evaluation_batch_bytes
  )
  model.tft_layer = tf_transform_output.transform_features_layer()
  if resize == 'none':
    options = inference.InferenceOptions(inference_mode, slide_overlap, chunk_size)
    functions = _native_signatures(model, tf_transform_output, options)
    return {name: function.get_concrete_function() for name, function in functions.items()}
  functions = {
    SERVING_SIGNATURE: _serving_default_fn(model, tf_transform_output, resize),
    MODEL_RESOLUTION_SIGNATURE: _model_resolution_fn(model, tf_transform_output),
    TRANSFORM_SIGNATURE: _transform_features_fn(model, tf_transform_output),
    EVALUATION_SIGNATURE: _evaluation_sums_fn(model, tf_transform_output, resize, chunk_size),
    PRESENCE_SIGNATURE: _class_presence_fn(tf_transform_output, num_classes),
    MASKS_SIGNATURE: _masks_fn(model, tf_transform_output, resize, chunk_size),
  }
  return {name: function.get_concrete_function() for name, function in functions.items()}
