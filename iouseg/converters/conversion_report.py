"""The conversion report: what was written per split, class balance, image sizes, and every skip."""

import dataclasses
from pathlib import Path

import numpy as np

from iouseg.converters.sources import Inputs, Skip
from transform import data_format


@dataclasses.dataclass
class SplitStats:
  records: int = 0
  id_pixels: np.ndarray = dataclasses.field(
    default_factory=lambda: np.zeros(data_format.MASK_ID_RANGE, np.int64)
  )
  heights: tuple | None = None  # (min, max); kept as a running range so memory stays flat.
  widths: tuple | None = None
  shards: list = dataclasses.field(default_factory=list)


class ReportBuilder:
  """Collects results while converting; `to_dict` gives the JSON-ready report."""

  def __init__(self, input_dir: Path, num_classes: int, ignore_label: int, settings: dict):
    self._input_dir = input_dir
    self._num_classes = num_classes
    self._ignore_label = ignore_label
    self._settings = settings
    self._inputs = 0
    self._splits = {}
    self._skips = []
    self._warnings = []

  def add_inputs(self, inputs: Inputs) -> None:
    """What finding the inputs gave: their count, and the skips and warnings found while pairing."""
    self._inputs += inputs.count
    self._warnings += inputs.warnings
    for skip in inputs.skips:
      self.add_skip(skip)

  def add_split(self, split: str, shard_names: list) -> None:
    self._split(split).shards = list(shard_names)

  def add_record(self, split: str, height: int, width: int, id_pixels: np.ndarray) -> None:
    stats = self._split(split)
    stats.records += 1
    stats.id_pixels += id_pixels
    stats.heights = _widen(stats.heights, (height, height))
    stats.widths = _widen(stats.widths, (width, width))

  def add_skip(self, skip: Skip) -> None:
    if skip.split is not None:
      self._split(skip.split)  # A split whose every input failed still shows up, with 0 records.
    self._skips.append(
      {
        'split': skip.split,
        'file': self._relative(skip.file),
        'reason': skip.reason,
        'image': self._relative(skip.image),
        'mask': self._relative(skip.mask),
      }
    )

  def to_dict(self) -> dict:
    total = SplitStats()
    for stats in self._splits.values():
      total.records += stats.records
      total.id_pixels += stats.id_pixels
      total.heights = _widen(total.heights, stats.heights)
      total.widths = _widen(total.widths, stats.widths)
    empty = [
      f'split {name!r} has no records' for name, stats in self._splits.items() if not stats.records
    ]
    return {
      'settings': self._settings,
      'inputs': self._inputs,
      'written': total.records,
      'skipped_count': len(self._skips),
      'records_per_split': {name: stats.records for name, stats in self._splits.items()},
      **self._pixels_and_sizes(total),
      'splits': {
        name: {'records': stats.records, 'shards': stats.shards, **self._pixels_and_sizes(stats)}
        for name, stats in self._splits.items()
      },
      'skipped': self._skips,
      'warnings': self._warnings + empty,
    }

  def _pixels_and_sizes(self, stats: SplitStats) -> dict:
    return {
      'class_pixel_counts': stats.id_pixels[: self._num_classes].tolist(),
      'ignore_pixel_count': int(stats.id_pixels[self._ignore_label]),
      'image_size': _size_range(stats.heights, stats.widths),
    }

  def _split(self, split: str) -> SplitStats:
    return self._splits.setdefault(split, SplitStats())

  def _relative(self, path: Path | None) -> str | None:
    """Paths relative to the input folder (settings.input), so reports read the same on any machine."""
    if path is None:
      return None
    return path.relative_to(self._input_dir).as_posix()


def _widen(current: tuple | None, added: tuple | None) -> tuple | None:
  if current is None or added is None:
    return current or added
  return min(current[0], added[0]), max(current[1], added[1])


def _size_range(heights: tuple | None, widths: tuple | None) -> dict | None:
  if heights is None:
    return None
  return {
    'min_height': heights[0],
    'max_height': heights[1],
    'min_width': widths[0],
    'max_width': widths[1],
  }
