"""Trainer input benchmark: does reading raw records through the transform graph keep up with the model?

    .venv/bin/python benchmarks/trainer_input.py                          # demo set, 64 px, 4 classes
    .venv/bin/python benchmarks/trainer_input.py --data voc_like --image-size 512 --num-classes 21 \
        --batch-size 4 --steps 6 --warmup 2 --repeats 2

Writes the data set (the demo set, or benchmarks/voc_like.py's 512x384 JPEGs), runs the project's
`preprocessing_fn` analyzers through TFT's Beam implementation (what the Transform component does)
and trains the Trainer's own compiled model (`trainer.task.compiled_model`) on three feeds, in turns:
- `trainer.data.make_dataset` with the Trainer's default settings: the raw records, cached in memory
  after their first pass, decoded, resized, normalised and one-hot encoded through `tft_layer` for
  every batch;
- the same without the cache (the files re-read every epoch);
- in-memory tensors (the limit): one batch of the same shapes held in memory and repeated.
Prints images/s of each and its ratio to the limit (targets: >= 0.95 at 64 px, >= 0.9 at 512 px).

With `--resize none` (`--data scenes`: benchmarks/large_images.py's 1024x768 scenes) the feeds are
the Trainer's crops (`trainer.crops`: one record through `tft_layer`, one random `--image-size`
crop of it at a random scale 0.5-2, then batched), and the limit the same crops (the same records
in the same order, the same draws: checked on the first batch) cut from the transform graph's
outputs held in memory, so that all the limit leaves out is the record's trip through the graph
(target >= 0.9):

    .venv/bin/python benchmarks/trainer_input.py --data scenes --resize none --image-size 256 \
        --records 24 --batch-size 8 --steps 20 --warmup 4 --repeats 2
"""

import argparse
import os
import sys
import tempfile

import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import metadata_io

from iouseg import demo_data
from trainer import crops, data, task
from trainer.config import RuntimeConfig, TrainerConfig
from transform import data_format
from transform.config import TransformConfig
from transform.preprocessing import preprocessing_fn

import report_table
import steps
import tf_env  # noqa: F401  (first: sets up TensorFlow)
import voc_like

TARGETS = {64: 0.95, 512: 0.9}
TRAINER_FEED = "Trainer's feed: raw records through tft_layer"
LIMIT = 'in-memory tensors (the limit)'
CROPS_LIMIT = 'the same crops cut from transformed tensors in memory (the limit)'
DATA_NAMES = {
  'demo': 'demo (96x96 PNG)',
  'voc_like': 'VOC-like (512x384 JPEG)',
  'scenes': 'large-image scenes (1024x768 PNG)',
}
CROPS_NOTE = ', one random crop each at a random scale 0.5-2 (--resize none)'


def write_data(kind: str, directory: str, records: int) -> str:
  """The train split's file pattern."""
  os.makedirs(os.path.join(directory, 'train'))
  if kind == 'demo':
    demo_data.write_split(
      os.path.join(directory, 'train', 'demo.tfrecord'),
      records,
      seed=0,
      size=96,
      ignore_label=data_format.DEFAULT_IGNORE_LABEL,
    )
  elif kind == 'scenes':
    import large_images

    large_images.write_split(
      os.path.join(directory, 'train', 'scenes.tfrecord'), records, 768, 1024, seed=0
    )
  else:
    voc_like.write_split(os.path.join(directory, 'train', 'voc_like.tfrecord'), records, seed=0)
  return os.path.join(directory, 'train', '*')


def analyse(pattern: str, config: TransformConfig, directory: str) -> tft.TFTransformOutput:
  """The transform graph of `preprocessing_fn` over the records: TFT's analyzers on Beam."""
  spec = data_format.raw_feature_spec()
  rows = [
    {k: v.numpy() for k, v in tf.io.parse_single_example(r, spec).items()}
    for r in tf.data.TFRecordDataset(tf.io.gfile.glob(pattern))
  ]
  output_dir = os.path.join(directory, 'transform_graph')
  raw_metadata = tft.DatasetMetadata.from_feature_spec(spec)
  with tft_beam.Context(temp_dir=os.path.join(directory, 'tft_tmp')):
    transform_fn = (rows, raw_metadata) | tft_beam.AnalyzeDataset(
      lambda inputs: preprocessing_fn(inputs, vars(config))
    )
    _ = transform_fn | tft_beam.WriteTransformFn(output_dir)
  # The raw schema beside the graph, as the Transform component writes it.
  metadata_io.write_metadata(
    raw_metadata, os.path.join(output_dir, tft.TFTransformOutput.RAW_METADATA_DIR)
  )
  return tft.TFTransformOutput(output_dir)


def in_memory_crops(pattern: str, tf_transform_output, records: int, batch_size: int, crop):
  """The crop feed's limit: `trainer.data.make_dataset`'s crops (seed 0, the split shuffled whole
  each epoch as when it is cached) cut from each record's transformed image, label and weight,
  computed once and held in memory (about 25 MB a 1024x768 scene)."""
  layer = tf_transform_output.transform_features_layer()
  spec = data.graph_input_spec(tf_transform_output)
  transformed = (
    data.raw_records([pattern])
    .map(lambda serialized: data.transform_record(layer, spec, serialized))
    .cache()
    .shuffle(records, seed=0, reshuffle_each_iteration=True)
  )
  dataset = data.crop_batches(transformed, lambda example: example, batch_size, 0, crop)
  return dataset.prefetch(data.BATCHES_AHEAD)


def same_first_batches(feeds: dict) -> None:
  """Fails unless every feed's first batch is the same, bit for bit: a limit of other crops would
  be no limit. A feed's n-th pass shuffles as its n-th (a seeded shuffle reshuffles each pass), so
  every feed has made one pass here."""
  first = [next(iter(dataset)) for dataset in feeds.values()]
  for batch in first[1:]:
    for ours, theirs in zip(first[0], batch):
      tf.debugging.assert_equal(ours, theirs, message='the feeds cut different crops')


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--data', choices=('demo', 'voc_like', 'scenes'), default='demo')
  parser.add_argument('--resize', choices=('stretch', 'none'), default='stretch')
  parser.add_argument(
    '--records', type=int, default=192, help='train records (default: %(default)s)'
  )
  parser.add_argument('--image-size', type=int, default=64)
  parser.add_argument('--num-classes', type=int, default=4)
  parser.add_argument('--batch-size', type=int, default=RuntimeConfig.batch_size)
  parser.add_argument('--steps', type=int, default=60, help='timed steps per turn')
  parser.add_argument('--warmup', type=int, default=10, help='untimed steps per turn')
  parser.add_argument('--repeats', type=int, default=3, help='turns of each feed (median kept)')
  parser.add_argument('--out', help='also write the markdown here')
  args = parser.parse_args(argv)
  config = TrainerConfig.from_flat(
    image_size=args.image_size,
    num_classes=args.num_classes,
    batch_size=args.batch_size,
    resize=args.resize,
    random_scale=args.resize == 'none',
  )
  # --resize none: the Trainer's train crops (trainer.crops), else whole records.
  crop = crops.train_and_eval_options(config)[0] if args.resize == 'none' else None
  runtime, model_settings, size = config.runtime, config.model, config.data.image_size

  with tempfile.TemporaryDirectory() as work:
    pattern = write_data(args.data, work, args.records)
    tf_transform_output = analyse(pattern, config.data, work)

    def feed(cache_mib):
      return data.make_dataset(
        [pattern], tf_transform_output, runtime.batch_size, seed=0, cache_mib=cache_mib, crop=crop
      )

    if crop is None:
      limit_name, limit_feed = LIMIT, tf.data.Dataset.from_tensors(next(iter(feed(0)))).repeat()
    else:
      limit_name = CROPS_LIMIT
      limit_feed = in_memory_crops(
        pattern, tf_transform_output, args.records, runtime.batch_size, crop
      )
    feeds = {
      f'{TRAINER_FEED} (cache_mib={runtime.cache_mib})': feed(runtime.cache_mib),
      'the same, no cache (files re-read each epoch)': feed(0),
      limit_name: limit_feed,
    }
    if crop is not None:
      same_first_batches(feeds)
    for dataset in feeds.values():  # a pass past the split's end: every cache filled before a turn
      for _ in dataset.take(args.records // runtime.batch_size + 1):
        pass
    model = task.compiled_model(config)
    rates = steps.interleaved(
      {
        name: (
          lambda d=dataset: steps.images_per_second(
            model, d, runtime.batch_size, args.steps, args.warmup
          )
        )
        for name, dataset in feeds.items()
      },
      args.repeats,
    )

  limit = rates[limit_name]
  target = TARGETS.get(args.image_size, TARGETS[512])
  lines = ['| feed | images/s | ratio to in-memory |', '| --- | --- | --- |']
  lines += [f'| {name} | {rate:.2f} | {rate / limit:.2f} |' for name, rate in rates.items()]
  lines += [
    '',
    f"Target: the Trainer's feed >= {target} x in-memory. Data: {args.records} "
    f'{DATA_NAMES[args.data]} records{CROPS_NOTE if args.resize == "none" else ""}. '
    f'Model: FCN {size}x{size}x{config.data.channels}, '
    f'{config.data.num_classes} classes, base filters {model_settings.base_filters}, depth '
    f'{model_settings.depth}, batch {runtime.batch_size}; median of {args.repeats} '
    f'interleaved turns of {args.steps} steps after {args.warmup} untimed.',
  ]
  device = 'GPU' if tf.config.list_physical_devices('GPU') else 'no GPU'
  return report_table.publish(lines, args.out, 'trainer_input.py', device=f', {device}')


if __name__ == '__main__':
  sys.exit(main())
