"""What both families of exported signatures share (`trainer.export`: images placed in a fixed-size
model input; `trainer.native_export`: `--resize none`, images at their own size): the input, the
parsing of raw examples, walking a batch in chunks, and the names of `evaluation_sums`' outputs."""

import tensorflow as tf

from trainer import decode

# The outputs of `evaluation_sums`.
CONFUSION_MATRIX = 'confusion_matrix'
CONFUSION_MATRIX_MODEL_RESOLUTION = 'confusion_matrix_model_resolution'
SOFT_IOU_INTERSECTION = 'soft_iou_intersection'
SOFT_IOU_UNION = 'soft_iou_union'
SUM_NAMES = (
  CONFUSION_MATRIX,
  CONFUSION_MATRIX_MODEL_RESOLUTION,
  SOFT_IOU_INTERSECTION,
  SOFT_IOU_UNION,
)

# Every signature's input: a batch of serialized `tf.Example`s.
EXAMPLES_SPEC = [tf.TensorSpec([None], tf.string, name='examples')]


def mask_ids(encoded):
  """A record's PNG mask at its own size: uint8 [H, W] class ids (and the ignore label), decoded as
  Transform decodes it; 1 byte a pixel until a caller casts what it needs."""
  return tf.io.decode_png(encoded, channels=1, dtype=tf.uint8)[..., 0]


def sum_specs(num_classes: int) -> tuple:
  """The per-example tf.TensorSpecs of `evaluation_sums`' outputs, in SUM_NAMES' order."""
  matrix = tf.TensorSpec([num_classes, num_classes], tf.int64)
  total = tf.TensorSpec([], tf.float64)
  return matrix, matrix, total, total


def parse_raw(serialized, tf_transform_output, keep_keys=None):
  spec = tf_transform_output.raw_feature_spec()
  if keep_keys is not None:
    spec = {k: v for k, v in spec.items() if k in keep_keys}
  return tf.io.parse_example(serialized, spec)


def flat(raw, key):
  """A raw bytes feature as [B], whether the schema made it [B] or [B, 1]."""
  return tf.reshape(raw[key], [-1])


def in_chunks(fn, examples, chunk_size: int, output_specs):
  """fn(examples[i:i + chunk_size]) for consecutive chunks, one after the other, concatenated;
  `output_specs`: one tf.TensorSpec (its shape without the batch dimension) per output of fn."""
  count = tf.size(examples)
  arrays = tuple(
    tf.TensorArray(
      spec.dtype,
      size=0,
      dynamic_size=True,
      infer_shape=False,
      element_shape=tf.TensorShape([None]).concatenate(spec.shape),
    )
    for spec in output_specs
  )

  def body(chunk, arrays):
    outputs = fn(examples[chunk * chunk_size : (chunk + 1) * chunk_size])
    return chunk + 1, tuple(a.write(chunk, o) for a, o in zip(arrays, outputs))

  chunks = (count + chunk_size - 1) // chunk_size
  _, arrays = tf.while_loop(
    lambda chunk, _: chunk < chunks, body, (tf.constant(0), arrays), parallel_iterations=1
  )
  return tuple(a.concat() for a in arrays)


def serving_outputs(probabilities, sizes) -> dict:
  """What `serving_default` returns for [B, H, W, K] probabilities at the images' own sizes (padded
  to the largest) and their [B, 2] sizes."""
  return {
    'probabilities': probabilities,
    'class_ids': decode.class_ids_tf(probabilities),
    'height': sizes[:, 0],
    'width': sizes[:, 1],
  }
