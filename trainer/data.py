"""tf.data input for training: transformed TFRecords -> (image, one-hot label, pixel weight) batches."""
import numpy as np
import tensorflow as tf
from tfx.components.trainer import fn_args_utils
from tfx.components.util import tfxio_utils
from tfx_bsl.public import tfxio
from tfx_bsl.tfxio import dataset_util

from transform import features


def data_accessor(examples) -> fn_args_utils.DataAccessor:
  """The data accessor TFX hands `run_fn`, for `examples` (Examples artifacts): for tools that read
  transformed examples outside a Trainer run (benchmarks, tests)."""
  return fn_args_utils.DataAccessor(
      tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact(examples, ['iouseg']),
      record_batch_factory=None, data_view_decode_fn=None)


def _example_bytes(tf_transform_output) -> int:
  """In-memory bytes of one transformed example (every transformed feature has a fixed shape)."""
  return sum(int(np.prod(spec.shape)) * spec.dtype.size
             for spec in tf_transform_output.transformed_feature_spec().values())


def _count_records(file_pattern, limit: int) -> int:
  """Records matched by `file_pattern`, counting no further than `limit` (reading stops there)."""
  patterns = tf.convert_to_tensor(file_pattern)
  files = tf.io.matching_files(patterns)
  records = tf.data.TFRecordDataset(files, dataset_util.detect_compression_type(patterns))
  return int(records.take(limit).reduce(np.int64(0), lambda count, _: count + 1))


def make_dataset(file_pattern, data_accessor, tf_transform_output, batch_size: int, seed: int,
                 shuffle: bool = True, cache_mib: int = 0) -> tf.data.Dataset:
  """An endless, batched dataset of (image, label, weight) read through TFX's TFXIO.

  TFXIO parses whole batches in C++ (one `parse_example` per batch); prefetch overlaps that with the
  training step. When the decoded split fits in `cache_mib`, the first pass keeps it in memory and
  every later epoch only shuffles and batches it: on a CPU the input pipeline shares the cores with
  the model, so each decompressed and parsed record costs training speed (benchmarks/trainer_input.py).
  """
  schema = tf_transform_output.transformed_metadata.schema
  max_cached = cache_mib * 2**20 // _example_bytes(tf_transform_output)
  records = _count_records(file_pattern, max_cached + 1) if max_cached else 0
  if 0 < records <= max_cached:
    dataset = data_accessor.tf_dataset_factory(
        file_pattern, tfxio.TensorFlowDatasetOptions(batch_size=batch_size, shuffle=False,
                                                     num_epochs=1), schema).unbatch().cache()
    if shuffle:
      dataset = dataset.shuffle(records, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.repeat().batch(batch_size, drop_remainder=True)
  else:
    dataset = data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, shuffle=shuffle, shuffle_seed=seed,
                                       num_epochs=None, drop_final_batch=True),
        schema)
  return dataset.map(lambda f: (f[features.IMAGE], f[features.LABEL], f[features.WEIGHT]),
                     num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def class_priors(dataset: tf.data.Dataset, num_batches: int) -> list:
  """Pixel frequency of each class over the first batches (ignored pixels excluded)."""
  totals, pixels = 0.0, 0.0
  for _, label, weight in dataset.take(num_batches):
    totals += tf.reduce_sum(label, axis=[0, 1, 2]).numpy()
    pixels += float(tf.reduce_sum(weight).numpy())
  return list(totals / max(pixels, 1.0))
