"""The exported SavedModel's signatures.

- `serving_default`: serialized `tf.Example`s holding at least `image/encoded` (PNG or JPEG) ->
  `probabilities` [B, H, W, C] and `class_ids` [B, H, W] at each input image's own resolution, plus its
  `height` and `width`. Images of different sizes in one batch are padded (zeros) to the largest.
- `transform_features`: serialized examples -> the transformed features (TFMA reads the one-hot label
  and pixel weight from it).
- `model_resolution`: serialized examples -> `probabilities` at the model's input size, aligned
  pixel for pixel with the transformed label; TFMA evaluates this one.
"""
import tensorflow as tf
import tf_keras

from transform import data_format
from trainer import decode
from transform import features


def _parse_raw(serialized, tf_transform_output, keep_keys=None):
  spec = tf_transform_output.raw_feature_spec()
  if keep_keys is not None:
    spec = {k: v for k, v in spec.items() if k in keep_keys}
  return tf.io.parse_example(serialized, spec)


def _resize_to_inputs(probabilities, encoded_images):
  """Bilinear resize of each example's probabilities to its own image size, padded to the batch max."""
  def size_of(encoded):
    return tf.shape(tf.io.decode_image(encoded, expand_animations=False))[:2]

  sizes = tf.map_fn(size_of, encoded_images, fn_output_signature=tf.int32)
  max_size = tf.reduce_max(sizes, axis=0)

  def resize_one(args):
    probs, size = args
    resized = tf.image.resize(probs, size, method='bilinear')
    return tf.image.pad_to_bounding_box(resized, 0, 0, max_size[0], max_size[1])

  resized = tf.map_fn(resize_one, (probabilities, sizes), fn_output_signature=tf.float32)
  return resized, sizes


def add_signatures(model: tf_keras.Model, tf_transform_output) -> dict:
  """Signatures for `model.save(..., signatures=...)`; attaches the Transform layer to the model."""
  model.tft_layer = tf_transform_output.transform_features_layer()

  def flat_encoded(raw):
    return tf.reshape(raw[data_format.IMAGE_ENCODED], [-1])

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serving_default(examples):
    raw = _parse_raw(examples, tf_transform_output, keep_keys={data_format.IMAGE_ENCODED})
    transformed = model.tft_layer(raw)
    probabilities, sizes = _resize_to_inputs(model(transformed[features.IMAGE]), flat_encoded(raw))
    return {'probabilities': probabilities, 'class_ids': decode.class_ids_tf(probabilities),
            'height': sizes[:, 0], 'width': sizes[:, 1]}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def model_resolution(examples):
    raw = _parse_raw(examples, tf_transform_output, keep_keys={data_format.IMAGE_ENCODED})
    probabilities = model(model.tft_layer(raw)[features.IMAGE])
    return {'probabilities': probabilities, 'class_ids': decode.class_ids_tf(probabilities)}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def transform_features(examples):
    return model.tft_layer(_parse_raw(examples, tf_transform_output))

  return {'serving_default': serving_default.get_concrete_function(),
          'model_resolution': model_resolution.get_concrete_function(),
          'transform_features': transform_features.get_concrete_function()}
