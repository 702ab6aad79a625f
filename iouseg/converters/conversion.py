"""`convert`: inputs found, each pair checked and written as one record, the report saved beside them."""

import dataclasses
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from iouseg.converters.conversion_report import ReportBuilder
from iouseg.converters.errors import ConversionError
from iouseg.converters.output import REPORT_NAME, ShardedWriter, check_output_is_free, staged_output
from iouseg.converters.sources import Pair, Skip, find_inputs
from transform import data_format
from transform.image_checks import BadFile, check_class_ids, read_image, read_mask

LAYOUTS = ('folders', 'voc')


@dataclasses.dataclass(frozen=True)
class Settings:
  """Everything that decides the output; saved in the report so a conversion can be repeated."""

  layout: str
  input: str
  num_classes: int
  ignore_label: int
  eval_fraction: float | None
  seed: int
  shards: int
  gzip: bool
  strict: bool


def convert(
  input_dir,
  output_dir,
  *,
  num_classes: int,
  layout: str = 'folders',
  ignore_label: int = data_format.DEFAULT_IGNORE_LABEL,
  eval_fraction: float | None = None,
  seed: int = 0,
  shards: int = 1,
  gzip: bool = False,
  overwrite: bool = False,
  strict: bool = False,
  progress_every: int = 0,
) -> dict:
  """Converts image/mask folders or a VOC tree into `output_dir/<split>/data-*-of-*.tfrecord[.gz]`.

  Returns the report that is also saved as `output_dir/conversion_report.json`. Raises
  `ConversionError`, leaving `output_dir` untouched, on bad settings, on output that would be
  overwritten, when nothing valid was found, and with `strict` when any input was skipped (the
  error's `report` then lists them all). `progress_every` > 0 prints a line to stderr every that
  many inputs.
  """
  input_dir, output_dir = Path(input_dir).resolve(), Path(output_dir).resolve()
  settings = Settings(
    layout, str(input_dir), num_classes, ignore_label, eval_fraction, seed, shards, gzip, strict
  )
  _check_settings(settings)
  check_output_is_free(output_dir, input_dir, overwrite)
  inputs = find_inputs(layout, input_dir, eval_fraction, seed)
  report = ReportBuilder(input_dir, num_classes, ignore_label, dataclasses.asdict(settings))
  report.add_inputs(inputs)
  progress = _Progress(inputs.count, len(inputs.skips), progress_every)
  with staged_output(output_dir) as staging:
    for split, pairs in _by_split(inputs.pairs).items():
      _write_split(split, pairs, staging, settings, report, progress)
    result = report.to_dict()
    _fail_unless_usable(result, strict)
    (staging / REPORT_NAME).write_text(json.dumps(result, indent=2) + '\n')
  return result


def _check_settings(settings: Settings) -> None:
  if settings.layout not in LAYOUTS:
    raise ConversionError(
      f'unknown layout {settings.layout!r} (expected one of {", ".join(LAYOUTS)})'
    )
  try:
    data_format.check_label_settings(
      settings.num_classes, settings.ignore_label, names=('--num-classes', '--ignore-label')
    )
  except ValueError as error:
    raise ConversionError(str(error)) from None
  if settings.shards < 1:
    raise ConversionError(f'--shards must be at least 1, got {settings.shards}')


def _by_split(pairs: list) -> dict:
  by_split = defaultdict(list)
  for pair in pairs:
    by_split[pair.split].append(pair)
  return by_split


def _write_split(
  split: str,
  pairs: list,
  staging: Path,
  settings: Settings,
  report: ReportBuilder,
  progress: '_Progress',
) -> None:
  # Never more shards than pairs, so small splits do not produce empty files.
  with ShardedWriter(staging / split, min(settings.shards, len(pairs)), settings.gzip) as writer:
    report.add_split(split, writer.names)
    for pair in pairs:
      try:
        example, image, id_pixels = _make_record(pair, settings)
      except BadFile as bad:
        report.add_skip(Skip(split, bad.path, bad.reason, pair.image, pair.mask))
        progress.skipped()
        continue
      writer.write(example.SerializeToString())
      report.add_record(split, image.height, image.width, id_pixels)
      progress.written()


def _make_record(pair: Pair, settings: Settings):
  """(tf.train.Example, SourceImage, pixels per mask value), or BadFile naming the file at fault."""
  image = read_image(pair.image)
  mask = read_mask(pair.mask)
  if mask.shape != (image.height, image.width):
    raise BadFile(
      pair.mask,
      f'mask is {mask.shape[0]}x{mask.shape[1]} (HxW) but its image '
      f'{pair.image.name} is {image.height}x{image.width}',
    )
  id_pixels = np.bincount(mask.ravel(), minlength=data_format.MASK_ID_RANGE)
  check_class_ids(pair.mask, id_pixels, settings.num_classes, settings.ignore_label)
  example = data_format.make_example(
    image.data,
    image.format,
    image.height,
    image.width,
    image.channels,
    filename=pair.image.relative_to(settings.input).as_posix(),
    # Re-encoded as 8-bit grayscale: TF's PNG decoder would turn palette indices into colours.
    mask_png=data_format.encode_png(mask),
  )
  return example, image, id_pixels


def _fail_unless_usable(result: dict, strict: bool) -> None:
  if strict and result['skipped']:
    raise ConversionError(
      f'--strict: {result["skipped_count"]} of {result["inputs"]} inputs are '
      f'unusable; nothing written',
      result,
    )
  if not result['written']:
    raise ConversionError(
      f'none of {result["inputs"]} inputs is a valid image/mask pair; nothing written', result
    )


class _Progress:
  """A stderr line every `every` inputs, so long runs show they are alive and how they are going."""

  def __init__(self, total: int, already_skipped: int, every: int):
    self._total, self._every = total, every
    self._written, self._skipped = 0, already_skipped

  def written(self) -> None:
    self._written += 1
    self._maybe_print()

  def skipped(self) -> None:
    self._skipped += 1
    self._maybe_print()

  def _maybe_print(self) -> None:
    done = self._written + self._skipped
    if self._every and (done % self._every == 0 or done == self._total):
      print(
        f'convert: {done}/{self._total} inputs ({self._written} written, {self._skipped} skipped)',
        file=sys.stderr,
        flush=True,
      )
