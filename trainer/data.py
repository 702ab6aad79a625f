"""tf.data input for training: transformed TFRecords -> (image, one-hot label, pixel weight) batches."""
import tensorflow as tf
from tfx_bsl.public import tfxio

from transform import features


def make_dataset(file_pattern, data_accessor, tf_transform_output, batch_size: int, seed: int,
                 shuffle: bool = True) -> tf.data.Dataset:
  """An endless, batched dataset of (image, label, weight) read through TFX's TFXIO.

  TFXIO parses whole batches in C++ (one `parse_example` per batch), which is what keeps the
  input pipeline ahead of the model; prefetch overlaps it with the training step.
  """
  dataset = data_accessor.tf_dataset_factory(
      file_pattern,
      tfxio.TensorFlowDatasetOptions(batch_size=batch_size, shuffle=shuffle, shuffle_seed=seed,
                                     num_epochs=None, drop_final_batch=True),
      tf_transform_output.transformed_metadata.schema)
  return dataset.map(lambda f: (f[features.IMAGE], f[features.LABEL], f[features.WEIGHT]),
                     num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def class_priors(dataset: tf.data.Dataset, num_batches: int) -> list:
  """Pixel frequency of each class over the first batches (ignored pixels excluded)."""
  totals, pixels = 0.0, 0.0
  for _, label, weight in dataset.take(num_batches):
    totals += tf.reduce_sum(label, axis=[0, 1, 2]).numpy()
    pixels += float(tf.reduce_sum(weight).numpy())
  return list(totals / max(pixels, 1.0))
