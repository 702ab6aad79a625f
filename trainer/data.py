"""tf.data input for training: the raw examples, through the transform graph, to batches of
(image, one-hot label, pixel weight).

The Trainer reads the RecordValidator's valid raw records (Transform runs its analyzers and exports
its graph but writes no transformed copy: a transformed record holds S x S x (channels + classes + 1)
float32 values, 26 MB at 512 px and 21 classes). Each batch goes through `tft_layer`, the very graph
the exported model serves with, so training and serving cannot skew. What the in-memory cache keeps
is the serialized raw records (the encoded PNG/JPEG pair, the input's own size), never tensors that
grow with the class count or with float32 pixels.
"""

import tensorflow as tf
from tfx_bsl.tfxio import dataset_util

from trainer import augment, crops
from trainer import config as trainer_config
from transform import data_format, features

# Batches decoded ahead of the training step: enough to overlap decoding with it, few enough that
# their one-hot labels (16 x 512 x 512 x 21 float32 = 352 MB at 512 px) do not pile up.
BATCHES_AHEAD = 2
# Records shuffled together when a split is read from its files every epoch.
_SHUFFLE_BUFFER = 1024


def raw_records(file_pattern) -> tf.data.Dataset:
  """The serialized records of every file matched (GZIP or not), files read in parallel."""
  patterns = tf.convert_to_tensor(file_pattern)
  files = tf.io.matching_files(patterns)
  return tf.data.TFRecordDataset(
    files, dataset_util.detect_compression_type(patterns), num_parallel_reads=tf.data.AUTOTUNE
  )


def _cacheable_count(file_pattern, records: tf.data.Dataset, limit: int) -> int:
  """The split's record count when its serialized records fit in `limit` bytes, else 0. Files
  larger than `limit` on disk settle it without reading (a record is never smaller than its
  compressed bytes); otherwise one pass counts records and bytes."""
  on_disk = sum(
    tf.io.gfile.stat(path).length for path in tf.io.gfile.glob(list(tf.nest.flatten(file_pattern)))
  )
  if not limit or on_disk > limit:
    return 0
  count, size = records.reduce(
    (tf.constant(0, tf.int64), tf.constant(0, tf.int64)),
    lambda totals, record: (
      totals[0] + 1,
      totals[1] + tf.cast(tf.strings.length(record), tf.int64),
    ),
  )
  return int(count) if int(size) <= limit else 0


def graph_input_spec(tf_transform_output) -> dict:
  """The schema's spec (its shapes are what the graph was traced with) for the features the
  transform graph reads."""
  return {
    key: spec
    for key, spec in tf_transform_output.raw_feature_spec().items()
    if key in data_format.raw_feature_spec()
  }


def transform_batch(tft_layer, raw_spec: dict, serialized):
  """A batch of serialized raw records -> (image, label, weight) through the transform graph."""
  transformed = tft_layer(tf.io.parse_example(serialized, raw_spec))
  return transformed[features.IMAGE], transformed[features.LABEL], transformed[features.WEIGHT]


def _one_dense(tensor):
  """The only record of a batch of one, dense: a ragged [1, (H), (W), ...] is one H x W image, so
  its flat values reshaped are the image, without `to_tensor`'s padded copy."""
  if not isinstance(tensor, tf.RaggedTensor):
    return tensor[0]
  rows, columns = (lengths[0] for lengths in tensor.nested_row_lengths())
  values = tensor.flat_values
  shape = tf.concat([tf.stack([rows, columns]), tf.shape(values, out_type=rows.dtype)[1:]], 0)
  return tf.reshape(values, shape)


def transform_record(tft_layer, raw_spec: dict, serialized):
  """One serialized raw record -> (image [H, W, C], label [H, W, K], weight [H, W]) at the
  image's own size (`--resize none`: the graph's outputs are ragged; one record is dense)."""
  return tuple(
    _one_dense(tensor) for tensor in transform_batch(tft_layer, raw_spec, serialized[None])
  )


def make_dataset(
  file_pattern,
  tf_transform_output,
  batch_size: int,
  seed: int,
  shuffle: bool = True,
  cache_mib: int = 0,
  augmentation: augment.AugmentOptions | None = None,
  crop: crops.CropOptions | None = None,
) -> tf.data.Dataset:
  """An endless, batched dataset of (image, label, weight) from raw records.

  When the split's serialized records fit in `cache_mib`, the first pass keeps them in memory and
  later epochs only shuffle, batch and transform them (no file reads, no decompression). Shuffling
  is by record before batching, with a buffer of the whole split when cached (a true shuffle each
  epoch) and of 1,024 records otherwise. `augmentation` (the train split's; None for eval) runs on
  each transformed batch, seeded by `seed` and the batch's index (`trainer.augment`).

  `crop` (`--resize none`, images at their own sizes): each record goes through the graph alone
  and one crop of it (`trainer.crops.cut`, seeded by `seed` and the draw's index) joins the batch.
  """
  tft_layer = tf_transform_output.transform_features_layer()
  spec = graph_input_spec(tf_transform_output)
  records = raw_records(file_pattern)
  cached_count = _cacheable_count(file_pattern, records, cache_mib * 2**20)
  if cached_count:
    records = records.cache()
  if shuffle:
    records = records.shuffle(
      cached_count or _SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True
    )
  if crop is None:
    # Transform and augmentation in one parallel map (`augment_dataset`'s `make_batch`).
    return augment.augment_dataset(
      records.repeat().batch(batch_size, drop_remainder=True),
      augmentation,
      seed,
      make_batch=lambda serialized: transform_batch(tft_layer, spec, serialized),
    ).prefetch(BATCHES_AHEAD)
  batches = crop_batches(
    records,
    lambda serialized: transform_record(tft_layer, spec, serialized),
    batch_size,
    seed,
    crop,
  )
  return augment.augment_dataset(batches, augmentation, seed).prefetch(BATCHES_AHEAD)


def crop_batches(
  examples: tf.data.Dataset, record, batch_size: int, seed: int, crop: crops.CropOptions
) -> tf.data.Dataset:
  """Endless batches of one crop per element of `examples`, in their order, repeated: `record`
  makes an element (image, label, weight) at its own size, and draw i is seeded by (seed, i)
  (`trainer.crops.cut`). One parallel map for both, in order, so the crops do not depend on
  timing."""
  return (
    examples.repeat()
    .enumerate()
    .map(
      lambda index, example: crops.cut(
        *record(example), crop, tf.stack([tf.cast(seed, tf.int64), index])
      ),
      num_parallel_calls=tf.data.AUTOTUNE,
      deterministic=True,
    )
    .batch(batch_size, drop_remainder=True)
  )


def class_priors(dataset: tf.data.Dataset, num_batches: int) -> list:
  """Pixel frequency of each class over the first batches (ignored pixels excluded)."""
  totals, pixels = 0.0, 0.0
  for _, label, weight in dataset.take(num_batches):
    totals += tf.reduce_sum(label, axis=[0, 1, 2]).numpy()
    pixels += float(tf.reduce_sum(weight).numpy())
  return list(totals / max(pixels, 1.0))


def train_and_eval(
  train_files, eval_files, tf_transform_output, config: trainer_config.TrainerConfig
):
  """(train, eval) datasets of a run: the train split shuffled and augmented by the config's
  recipe, the eval split in order and never augmented; both cached within `runtime.cache_mib`."""
  runtime = config.runtime
  augmentation = augment.AugmentOptions.from_config(config)
  train_crop, eval_crop = {}, {}
  if config.data.resize == 'none':  # images at their own size: crops of the model size
    train_options, eval_options, augmentation = crops.train_and_eval_options(config)
    # Passed only when there are crops: make_dataset's callers without crops stay as they were.
    train_crop, eval_crop = {'crop': train_options}, {'crop': eval_options}
  train = make_dataset(
    train_files,
    tf_transform_output,
    runtime.batch_size,
    runtime.seed,
    cache_mib=runtime.cache_mib,
    augmentation=augmentation,
    **train_crop,
  )
  evaluation = make_dataset(
    eval_files,
    tf_transform_output,
    runtime.batch_size,
    runtime.seed,
    shuffle=False,
    cache_mib=runtime.cache_mib,
    **eval_crop,
  )
  return train, evaluation
