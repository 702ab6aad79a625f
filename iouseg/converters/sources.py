"""Finding the inputs: which image goes with which mask, and in which split.

One input is one record-to-be: a stem in a folder split (`images/x.jpg` + `masks/x.png`) or one line of
a VOC list file. Every input ends up either as a `Pair` (to be decoded and written) or a `Skip` (with
the file at fault and why), so `written + skipped == inputs` holds by construction.
"""

import dataclasses
import hashlib
from collections import defaultdict
from pathlib import Path

from iouseg.converters.errors import ConversionError

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg')
MASK_SUFFIXES = ('.png',)  # A lossy format would blur class ids at object borders.
# VOC's list files and the split names the rest of the project uses.
VOC_SPLITS = {'train': 'train', 'val': 'eval'}
DEFAULT_EVAL_FRACTION = 0.2


@dataclasses.dataclass(frozen=True)
class Pair:
  split: str | None  # None until a flat folder is split by fraction.
  image: Path
  mask: Path


@dataclasses.dataclass(frozen=True)
class Skip:
  split: str | None
  file: Path  # The file the reason is about.
  reason: str
  image: Path | None = None
  mask: Path | None = None


@dataclasses.dataclass
class Inputs:
  pairs: list
  skips: list
  warnings: list

  @property
  def count(self) -> int:
    return len(self.pairs) + len(self.skips)


def find_inputs(layout: str, root: Path, eval_fraction: float | None, seed: int) -> Inputs:
  if not root.is_dir():
    raise ConversionError(f'input folder {root} does not exist')
  if layout == 'voc':
    if eval_fraction is not None:
      raise ConversionError(
        '--eval-fraction applies to a flat images/ + masks/ folder; VOC splits '
        'come from ImageSets/Segmentation/{train,val}.txt'
      )
    return find_voc_inputs(root)
  return find_folder_inputs(root, eval_fraction, seed)


# --- folders layout ---------------------------------------------------------------------------------


def find_folder_inputs(root: Path, eval_fraction: float | None, seed: int) -> Inputs:
  """`root/{images,masks}` split by a seeded fraction, or `root/<split>/{images,masks}` per split."""
  split_dirs = [d for d in _visible_subfolders(root) if _holds_pairs(d)]
  if _holds_pairs(root):
    if split_dirs:
      raise ConversionError(
        f'{root} holds both images/ + masks/ and split folders '
        f'({", ".join(d.name for d in split_dirs)}); use one or the other'
      )
    inputs = pair_folder(root, split=None)
    fraction = DEFAULT_EVAL_FRACTION if eval_fraction is None else eval_fraction
    return split_by_fraction(inputs, fraction, seed)
  if not split_dirs:
    if (root / 'JPEGImages').is_dir():
      raise ConversionError(f'{root} looks like PASCAL VOC; pass --layout voc')
    raise ConversionError(
      f'no images/ + masks/ folders under {root} (expected {root}/images and '
      f'{root}/masks, or {root}/<split>/images and {root}/<split>/masks)'
    )
  if eval_fraction is not None:
    raise ConversionError(
      f'--eval-fraction splits a flat images/ + masks/ folder; {root} is already '
      f'split into {", ".join(d.name for d in split_dirs)}'
    )
  inputs = Inputs([], [], [])
  for split_dir in split_dirs:
    found = pair_folder(split_dir, split=split_dir.name)
    inputs.pairs += found.pairs
    inputs.skips += found.skips
    inputs.warnings += found.warnings
  ignored = [d.name for d in _visible_subfolders(root) if d not in split_dirs]
  if ignored:
    inputs.warnings.append(f'ignored folders without images/ or masks/: {", ".join(ignored)}')
  return inputs


def pair_folder(folder: Path, split: str | None) -> Inputs:
  """Matches `folder/images/*` with `folder/masks/*` by file stem."""
  images, image_warnings = _files_by_stem(folder / 'images')
  masks, mask_warnings = _files_by_stem(folder / 'masks')
  inputs = Inputs([], [], image_warnings + mask_warnings)
  for stem in sorted(images.keys() | masks.keys()):
    found = _pair_or_skip(split, stem, images.get(stem, []), masks.get(stem, []))
    (inputs.pairs if isinstance(found, Pair) else inputs.skips).append(found)
  return inputs


def _pair_or_skip(split: str | None, stem: str, images: list, masks: list):
  image, mask = (images[0] if images else None), (masks[0] if masks else None)

  def skip(file: Path, reason: str) -> Skip:
    return Skip(split, file, reason, image, mask)

  if not images:
    return skip(
      mask, f"mask without image (no image named '{stem}' with suffix {'/'.join(IMAGE_SUFFIXES)})"
    )
  if not masks:
    return skip(image, f"image without mask (no mask named '{stem}.png')")
  if len(images) > 1:
    return skip(
      image, f"several images share the stem '{stem}': {', '.join(p.name for p in images)}"
    )
  if len(masks) > 1:
    return skip(mask, f"several masks share the stem '{stem}': {', '.join(p.name for p in masks)}")
  if image.suffix.lower() not in IMAGE_SUFFIXES:
    return skip(image, f"unsupported image file type '{image.suffix}' (expected PNG or JPEG)")
  if mask.suffix.lower() not in MASK_SUFFIXES:
    return skip(
      mask,
      f"unsupported mask file type '{mask.suffix}' (masks must be PNG: lossy "
      f'formats change class ids)',
    )
  return Pair(split, image, mask)


def _files_by_stem(folder: Path):
  """Visible files of `folder` grouped by stem; hidden files (.DS_Store and the like) are not inputs."""
  by_stem, warnings = defaultdict(list), []
  if not folder.is_dir():
    return by_stem, warnings
  for path in sorted(folder.iterdir()):
    if path.name.startswith('.'):
      continue
    if path.is_dir():
      warnings.append(f'ignored nested folder {path} (nested folders are not searched)')
      continue
    by_stem[path.stem].append(path)
  return by_stem, warnings


def _visible_subfolders(folder: Path) -> list:
  return [d for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith('.')]


def _holds_pairs(folder: Path) -> bool:
  return (folder / 'images').is_dir() or (folder / 'masks').is_dir()


def split_by_fraction(inputs: Inputs, eval_fraction: float, seed: int) -> Inputs:
  """Sends round(fraction * pairs) pairs to 'eval', the rest to 'train', chosen by a seeded hash.

  Ranking by sha256(seed, file name) rather than shuffling gives the same split on every Python
  version and platform, and adding files later does not move the existing ones between splits unless
  the eval count itself changes. The split is drawn from matched pairs before they are decoded, so
  pairs found unusable later leave their split that much smaller (the report counts both splits).
  """
  if not 0 < eval_fraction < 1:
    raise ConversionError(
      f'--eval-fraction must be between 0 and 1 (exclusive), got {eval_fraction}'
    )
  ranked = sorted(inputs.pairs, key=lambda pair: _seeded_rank(seed, pair.image.name))
  eval_count = _eval_count(len(ranked), eval_fraction)
  eval_images = {pair.image for pair in ranked[:eval_count]}
  pairs = [
    dataclasses.replace(pair, split='eval' if pair.image in eval_images else 'train')
    for pair in inputs.pairs
  ]
  warnings = list(inputs.warnings)
  if len(pairs) < 2:
    warnings.append(f'only {len(pairs)} valid-looking pair(s): too few to split, all go to train')
  return Inputs(pairs, inputs.skips, warnings)


def _seeded_rank(seed: int, name: str) -> str:
  return hashlib.sha256(f'{seed}:{name}'.encode()).hexdigest()


def _eval_count(total: int, fraction: float) -> int:
  """Rounded share, but at least one pair on each side whenever there are two or more."""
  if total < 2:
    return 0
  return min(max(int(fraction * total + 0.5), 1), total - 1)


# --- PASCAL VOC layout ------------------------------------------------------------------------------


def find_voc_inputs(root: Path) -> Inputs:
  """Ids listed in `ImageSets/Segmentation/{train,val}.txt`, each as JPEGImages/ID.jpg plus
  SegmentationClass/ID.png."""
  images_dir, masks_dir = root / 'JPEGImages', root / 'SegmentationClass'
  lists_dir = root / 'ImageSets' / 'Segmentation'
  for required in (images_dir, masks_dir, lists_dir):
    if not required.is_dir():
      raise ConversionError(f'{root} is not in the VOC layout: {required} is missing')
  list_files = {split: lists_dir / f'{name}.txt' for name, split in VOC_SPLITS.items()}
  present = {split: path for split, path in list_files.items() if path.is_file()}
  if not present:
    raise ConversionError(f'no list files in {lists_dir} (expected train.txt and val.txt)')
  inputs = Inputs(
    [],
    [],
    [
      f'{path} not found: no {split} split'
      for split, path in list_files.items()
      if split not in present
    ],
  )
  ids_by_split = {}
  for split, list_file in present.items():
    seen = ids_by_split.setdefault(split, set())
    for image_id in _read_ids(list_file):
      found = _voc_pair_or_skip(split, list_file, image_id, images_dir, masks_dir, image_id in seen)
      seen.add(image_id)
      (inputs.pairs if isinstance(found, Pair) else inputs.skips).append(found)
  inputs.warnings += _overlap_warnings(ids_by_split)
  return inputs


def _voc_pair_or_skip(split, list_file, image_id, images_dir, masks_dir, duplicate):
  image, mask = images_dir / f'{image_id}.jpg', masks_dir / f'{image_id}.png'
  if duplicate:
    return Skip(
      split, image, f"'{image_id}' listed more than once in {list_file.name}", image, mask
    )
  if not image.is_file():
    return Skip(split, image, f'image listed in {list_file.name} not found', None, mask)
  if not mask.is_file():
    return Skip(split, mask, f'mask for image listed in {list_file.name} not found', image, None)
  return Pair(split, image, mask)


def _read_ids(list_file: Path) -> list:
  """First token of each non-blank line (VOC's Main/ lists carry a second column; Segmentation/ not)."""
  return [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]


def _overlap_warnings(ids_by_split: dict) -> list:
  shared = set.intersection(*ids_by_split.values()) if len(ids_by_split) > 1 else set()
  if not shared:
    return []
  # Written to both splits as listed, but eval scores on images also trained on are optimistic.
  return [
    f'{len(shared)} id(s) are listed in both train and val: {", ".join(sorted(shared)[:5])}'
    + (' ...' if len(shared) > 5 else '')
  ]
