"""The `iouseg convert` subcommand: flags in, short summary out, exit code for scripts."""

import argparse
import sys
from pathlib import Path

from iouseg.converters.conversion import LAYOUTS, convert
from iouseg.converters.errors import ConversionError
from iouseg.converters.output import REPORT_NAME
from iouseg.converters.sources import DEFAULT_EVAL_FRACTION
from transform import data_format

PROGRESS_EVERY = 500
SKIPS_SHOWN = 20  # The report lists all of them; the terminal gets a readable sample.


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
    '--layout',
    choices=LAYOUTS,
    default='folders',
    help='folders: INPUT/<split>/{images,masks}/ or a flat INPUT/{images,masks}/, '
    'matched by file stem; voc: PASCAL VOC 2012 (JPEGImages/, '
    'SegmentationClass/, ImageSets/Segmentation/{train,val}.txt; val is '
    'written as split "eval") (default: %(default)s)',
  )
  parser.add_argument('--input', required=True, type=Path, metavar='DIR', help='dataset folder')
  parser.add_argument(
    '--output',
    required=True,
    type=Path,
    metavar='DIR',
    help='gets <split>/data-XXXXX-of-YYYYY.tfrecord[.gz] and ' + REPORT_NAME,
  )
  parser.add_argument(
    '--num-classes',
    required=True,
    type=int,
    metavar='N',
    help='class ids run 0..N-1; any other id except the ignore label is an error',
  )
  parser.add_argument(
    '--ignore-label',
    type=int,
    default=data_format.DEFAULT_IGNORE_LABEL,
    metavar='ID',
    help='mask value for pixels that count nowhere (default: %(default)s)',
  )
  parser.add_argument(
    '--eval-fraction',
    type=float,
    metavar='F',
    help=f'flat folders only: share of pairs that go to "eval" (default: {DEFAULT_EVAL_FRACTION})',
  )
  parser.add_argument(
    '--seed',
    type=int,
    default=0,
    help='chooses the eval pairs with --eval-fraction (default: %(default)s)',
  )
  parser.add_argument(
    '--shards',
    type=int,
    default=1,
    metavar='N',
    help='TFRecord files per split (default: %(default)s)',
  )
  parser.add_argument('--gzip', action='store_true', help='GZIP-compress the TFRecord files')
  parser.add_argument(
    '--overwrite', action='store_true', help='replace OUTPUT if it holds an earlier conversion'
  )
  parser.add_argument(
    '--strict', action='store_true', help='fail, writing nothing, if any input is unusable'
  )


def main(args: argparse.Namespace) -> int:
  try:
    report = convert(
      args.input,
      args.output,
      layout=args.layout,
      num_classes=args.num_classes,
      ignore_label=args.ignore_label,
      eval_fraction=args.eval_fraction,
      seed=args.seed,
      shards=args.shards,
      gzip=args.gzip,
      overwrite=args.overwrite,
      strict=args.strict,
      progress_every=PROGRESS_EVERY,
    )
  except ConversionError as error:
    if error.report:
      _print_problems(error.report)
    print(f'iouseg convert: error: {error}', file=sys.stderr)
    return 1
  _print_problems(report)
  splits = ', '.join(f'{name}: {count}' for name, count in report['records_per_split'].items())
  print(
    f'wrote {report["written"]} records ({splits}) to {args.output}; '
    f'skipped {report["skipped_count"]} of {report["inputs"]} inputs'
  )
  print(f'report: {Path(args.output) / REPORT_NAME}')
  return 0


def _print_problems(report: dict) -> None:
  for skip in report['skipped'][:SKIPS_SHOWN]:
    split = f'[{skip["split"]}] ' if skip['split'] else ''
    print(f'skipped {split}{skip["file"]}: {skip["reason"]}', file=sys.stderr)
  if report['skipped_count'] > SKIPS_SHOWN:
    print(f'... and {report["skipped_count"] - SKIPS_SHOWN} more', file=sys.stderr)
  for warning in report['warnings']:
    print(f'warning: {warning}', file=sys.stderr)
