"""`iouseg report`: flags and entry point. Only argparse at import time: the `iouseg` parser adds
these flags and must not load TensorFlow; the work is imported when the command runs."""

import argparse
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
    '--metadata',
    default='runs/metadata.sqlite',
    help=(
      'ML Metadata of the runs: an SQLite file or mysql://USER@HOST[:PORT]/DB '
      '(docs/metadata.md) (default: %(default)s)'
    ),
  )
  parser.add_argument(
    '--pipeline-name',
    default='iouseg',
    help='report on the latest run of this pipeline (default: %(default)s)',
  )
  parser.add_argument(
    '--output',
    help=(
      'HTML file to write (default: <pipeline-name>-report.html beside the SQLite file, or in '
      'the current folder for a server)'
    ),
  )
  parser.add_argument(
    '--max-images',
    type=int,
    default=100,
    help='gallery size: the eval images with the lowest IoU (default: %(default)s)',
  )


def main(args: argparse.Namespace) -> int:
  from iouseg import run_summary
  from iouseg.report import gallery, page

  summary = run_summary.latest_run(args.metadata, args.pipeline_name)
  if not summary.evaluation_uri:
    raise SystemExit(
      f'run {summary.run_id} has no Evaluator output to report on '
      f'(components: {summary.component_states})'
    )
  samples = gallery.segment(summary.model_uri, gallery.eval_records(summary.examples_uri))
  output = args.output or os.path.join(
    os.path.dirname(os.path.abspath(args.metadata)), f'{args.pipeline_name}-report.html'
  )
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  with open(output, 'w', encoding='utf-8') as f:
    f.write(page.render(summary, samples, args.pipeline_name, args.max_images))
  print(
    f'{output}: {"blessed" if summary.blessed else "not blessed"}, '
    f'{min(len(samples), args.max_images)} of {len(samples)} eval images'
  )
  return 0
