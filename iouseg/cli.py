"""`iouseg`: the project's command-line tool, one subcommand per job (`iouseg COMMAND --help`)."""
import os

# TFX 1.16 needs Keras 2; TF 2.16 gives Keras 3 unless told before TensorFlow is first imported.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')

import argparse  # pylint: disable=g-import-not-at-top,wrong-import-position
import sys  # pylint: disable=wrong-import-position

from iouseg import data_format  # pylint: disable=wrong-import-position


def _demo_data(args) -> int:
  from iouseg import demo_data
  paths = demo_data.write_demo_data(args.output, args.train_count, args.eval_count, args.size,
                                    args.seed)
  for split, path in paths.items():
    print(f'{split}: {path}')
  return 0


def _add_demo_data(sub):
  p = sub.add_parser('demo-data', help='write the synthetic demo set as TFRecords',
                     description='Writes OUTPUT/train/demo.tfrecord and OUTPUT/eval/demo.tfrecord: '
                     'shapes (disc, square, triangle) on textured backgrounds, 4 classes.')
  p.add_argument('--output', default='data/demo', help='output folder (default: %(default)s)')
  p.add_argument('--train-count', type=int, default=192, help='train records (default: %(default)s)')
  p.add_argument('--eval-count', type=int, default=48, help='eval records (default: %(default)s)')
  p.add_argument('--size', type=int, default=96, help='image height and width (default: %(default)s)')
  p.add_argument('--seed', type=int, default=42, help='random seed (default: %(default)s)')
  p.set_defaults(func=_demo_data)


def _add_run(sub):
  from trainer.config import LOSS_NAMES
  p = sub.add_parser('run', help='run the whole pipeline locally (LocalDagRunner, SQLite metadata)',
                     description='Runs ImportExampleGen -> ... -> Evaluator -> Pusher on this machine '
                     'and prints a summary read back from ML Metadata.')
  p.add_argument('--data-root', default='data/demo',
                 help='TFRecords; train/ and eval/ subfolders are used as splits, otherwise a 3:1 '
                 'hash split (default: %(default)s)')
  p.add_argument('--pipeline-root', default='runs/pipeline_root', help='(default: %(default)s)')
  p.add_argument('--serving-dir', default='runs/serving',
                 help='blessed models are pushed here as numbered versions (default: %(default)s)')
  p.add_argument('--metadata', default='runs/metadata.sqlite', help='(default: %(default)s)')
  p.add_argument('--pipeline-name', default='iouseg', help='(default: %(default)s)')
  p.add_argument('--image-size', type=int, default=64, help='model input size (default: %(default)s)')
  p.add_argument('--channels', type=int, default=3, choices=(1, 3), help='(default: %(default)s)')
  p.add_argument('--num-classes', type=int, default=4, help='including background (default: %(default)s)')
  p.add_argument('--class-names', help='comma-separated, background first (default: class_0,...)')
  p.add_argument('--ignore-label', type=int, default=data_format.DEFAULT_IGNORE_LABEL,
                 help='(default: %(default)s)')
  p.add_argument('--train-steps', type=int, default=400, help='(default: %(default)s)')
  p.add_argument('--eval-steps', type=int, default=3, help='(default: %(default)s)')
  p.add_argument('--epochs', type=int, default=4, help='(default: %(default)s)')
  p.add_argument('--loss', default='soft_iou', choices=LOSS_NAMES, help='(default: %(default)s)')
  p.add_argument('--learning-rate', type=float, default=3e-3, help='(default: %(default)s)')
  p.add_argument('--batch-size', type=int, default=16, help='(default: %(default)s)')
  p.add_argument('--base-filters', type=int, default=16, help='(default: %(default)s)')
  p.add_argument('--depth', type=int, default=3, help='(default: %(default)s)')
  p.add_argument('--head-init', default='zeros', choices=('zeros', 'prior'),
                 help='initial sigmoid bias of the head (default: %(default)s)')
  p.add_argument('--mixed-precision', action='store_true', help='mixed_float16 on GPU')
  p.add_argument('--min-mean-iou', type=float, default=0.5,
                 help='blessing threshold on eval mean IoU (default: %(default)s)')
  p.add_argument('--beam-arg', action='append', default=None, metavar='ARG',
                 help='Beam pipeline argument, repeatable, e.g. --beam-arg=--direct_num_workers=2')
  p.add_argument('--no-cache', action='store_true', help='re-execute every component')
  p.set_defaults(func=_run)


def _run(args) -> int:
  from iouseg import run_summary
  from pipeline import local_runner
  from trainer.config import TrainerConfig
  from transform.preprocessing import TransformConfig

  class_names = args.class_names.split(',') if args.class_names else None
  transform_config = TransformConfig(args.image_size, args.channels, args.num_classes,
                                     args.ignore_label)
  trainer_config = TrainerConfig(
      num_classes=args.num_classes, image_size=args.image_size, channels=args.channels,
      loss=args.loss, learning_rate=args.learning_rate, batch_size=args.batch_size,
      base_filters=args.base_filters, depth=args.depth, epochs=args.epochs,
      head_init=args.head_init, mixed_precision=args.mixed_precision)
  local_runner.run(
      metadata_path=args.metadata, beam_pipeline_args=args.beam_arg,
      pipeline_name=args.pipeline_name, pipeline_root=os.path.abspath(args.pipeline_root),
      data_root=os.path.abspath(args.data_root),
      serving_model_dir=os.path.abspath(args.serving_dir), transform_config=transform_config,
      trainer_config=trainer_config, train_steps=args.train_steps, eval_steps=args.eval_steps,
      min_mean_iou=args.min_mean_iou, split_patterns=local_runner.split_patterns_for(args.data_root),
      class_names=class_names, enable_cache=not args.no_cache)
  print(run_summary.format_summary(run_summary.latest_run(args.metadata, args.pipeline_name)))
  return 0


def _add_predict(sub):
  p = sub.add_parser('predict', help='segment image files with a pushed model',
                     description='Runs the SavedModel\'s serving_default signature on each image and '
                     'writes a PNG of class ids (same size as the image) per input.')
  p.add_argument('--model', required=True,
                 help='a SavedModel, or a serving dir of numbered versions (the latest is used)')
  p.add_argument('--output', required=True, help='folder for <image stem>.mask.png files')
  p.add_argument('images', nargs='+', help='PNG or JPEG files')
  p.set_defaults(func=_predict)


def _predict(args) -> int:
  from iouseg import predict
  for image, written in predict.predict_files(args.model, args.images, args.output):
    print(f'{image} -> {written}')
  return 0


def _add_convert(sub):
  from iouseg import converters
  p = sub.add_parser('convert', help='image/mask folders or PASCAL VOC -> TFRecords',
                     description=converters.__doc__.split('\n', 1)[0],
                     epilog='Bad files are skipped and listed, with their reason, in '
                     'OUTPUT/conversion_report.json (--strict makes any of them fatal).')
  converters.add_arguments(p)
  p.set_defaults(func=converters.main)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog='iouseg', description=__doc__)
  sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
  _add_demo_data(sub)
  _add_convert(sub)
  _add_run(sub)
  _add_predict(sub)
  return parser


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  return args.func(args)


if __name__ == '__main__':
  sys.exit(main())
