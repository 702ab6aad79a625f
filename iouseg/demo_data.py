"""The bundled synthetic demo set: shapes on textured backgrounds, deterministic for a seed.

Class 0 is background, 1 disc, 2 square, 3 triangle. Discs are common and large, triangles rare and
small, so pixel frequencies are imbalanced the way real data is (background ~3/4 of pixels).
Each shape carries a 1-pixel band of the ignore label around it, like PASCAL VOC's void border.

Two more kinds on the same backgrounds, for the studies of data the demo set does not cover:
'lateral' (classes with a side: a disc in the left third and a disc that looks the same in the
right third, so only the side tells them apart and a mirror of one is the other) and 'thin'
(2-3 px curved bands of two classes, no ignore border: a thin structure would be mostly border).
"""

import os

import numpy as np
from PIL import Image, ImageDraw

from transform import data_format

CLASS_NAMES = ('background', 'disc', 'square', 'triangle')
NUM_CLASSES = len(CLASS_NAMES)
# Named sides, so that a mirroring augmentation swaps them (trainer/lateral.py).
LATERAL_CLASS_NAMES = ('background', 'left_disc', 'right_disc')
THIN_CLASS_NAMES = ('background', 'arc', 'wave')
# Per class: chance that an image holds one, radius range in pixels, base colour.
_SHAPES = {
  1: (0.9, (10, 20), (200, 70, 60)),
  2: (0.5, (7, 14), (60, 170, 80)),
  3: (0.35, (8, 13), (70, 90, 210)),
}


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
  """Low-frequency colour noise plus stripes: a background that plain thresholding cannot solve."""
  coarse = rng.uniform(70, 180, size=(size // 16 + 1, size // 16 + 1, 3))
  smooth = np.kron(coarse, np.ones((16, 16, 1)))[:size, :size]
  freq, phase = rng.uniform(0.1, 0.5), rng.uniform(0, np.pi)
  stripes = 25 * np.sin(freq * np.arange(size) + phase)[None, :, None]
  return smooth + stripes + rng.normal(0, 6, size=(size, size, 3))


def _polygon(class_id: int, cx: float, cy: float, r: float) -> list:
  if class_id == 2:
    return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
  return [(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)]


def make_pair(rng: np.random.Generator, size: int, ignore_label: int):
  """One (uint8 RGB image [size, size, 3], uint8 class-id mask [size, size])."""
  image = Image.fromarray(np.clip(_texture(rng, size), 0, 255).astype(np.uint8))
  mask = Image.new('L', (size, size), 0)
  paint, label = ImageDraw.Draw(image), ImageDraw.Draw(mask)
  for class_id, (chance, (r_min, r_max), colour) in _SHAPES.items():
    if rng.uniform() > chance:
      continue
    r = rng.uniform(r_min, r_max) * size / 96
    cx, cy = rng.uniform(r, size - r, size=2)
    fill = _fill(rng, colour)
    if class_id == 1:
      box = [cx - r, cy - r, cx + r, cy + r]
      paint.ellipse(box, fill=fill)
      label.ellipse(box, fill=class_id, outline=ignore_label, width=1)
    else:
      points = _polygon(class_id, cx, cy, r)
      paint.polygon(points, fill=fill)
      label.polygon(points, fill=class_id, outline=ignore_label)
  return np.asarray(image), np.asarray(mask)


def _fill(rng: np.random.Generator, colour) -> tuple:
  return tuple(int(c) for c in np.clip(np.asarray(colour) + rng.normal(0, 25, 3), 0, 255))


def make_lateral_pair(rng: np.random.Generator, size: int, ignore_label: int):
  """One lateral (image, mask): each of class 1 (left third) and class 2 (right third) with
  chance 0.8, discs of the demo's disc sizes and colours, so the side is the only difference."""
  image = Image.fromarray(np.clip(_texture(rng, size), 0, 255).astype(np.uint8))
  mask = Image.new('L', (size, size), 0)
  paint, label = ImageDraw.Draw(image), ImageDraw.Draw(mask)
  _, (r_min, r_max), colour = _SHAPES[1]
  for class_id in (1, 2):
    if rng.uniform() > 0.8:
      continue
    r = rng.uniform(r_min, r_max) * size / 96
    low, high = (r, size / 3) if class_id == 1 else (2 * size / 3, size - r)
    cx, cy = rng.uniform(low, high), rng.uniform(r, size - r)
    box = [cx - r, cy - r, cx + r, cy + r]
    paint.ellipse(box, fill=_fill(rng, colour))
    label.ellipse(box, fill=class_id, outline=ignore_label, width=1)
  return np.asarray(image), np.asarray(mask)


def make_thin_pair(rng: np.random.Generator, size: int, ignore_label: int):
  """One thin-structure (image, mask): class 1 an arc of a circle, class 2 a sine wave across the
  image (a period of 12-24 px, so its turns stay bands too), each 2-3 px wide with chance 0.8
  (`ignore_label` unused: no border)."""
  del ignore_label
  image = Image.fromarray(np.clip(_texture(rng, size), 0, 255).astype(np.uint8))
  mask = Image.new('L', (size, size), 0)
  paint, label = ImageDraw.Draw(image), ImageDraw.Draw(mask)
  if rng.uniform() < 0.8:
    r = rng.uniform(0.2, 0.45) * size
    cx, cy = rng.uniform(0.3, 0.7, size=2) * size
    start = rng.uniform(0, 360)
    box, span, width = (
      [cx - r, cy - r, cx + r, cy + r],
      rng.uniform(90, 270),
      int(rng.integers(2, 4)),
    )
    paint.arc(box, start, start + span, fill=_fill(rng, _SHAPES[1][2]), width=width)
    label.arc(box, start, start + span, fill=1, width=width)
  if rng.uniform() < 0.8:
    x = np.linspace(0, size - 1, 4 * size)
    y = rng.uniform(0.2, 0.8) * size + rng.uniform(0.05, 0.15) * size * np.sin(
      2 * np.pi * x / rng.uniform(12, 24) + rng.uniform(0, 2 * np.pi)
    )
    points, width = list(zip(x.tolist(), y.tolist())), int(rng.integers(2, 4))
    paint.line(points, fill=_fill(rng, _SHAPES[3][2]), width=width, joint='curve')
    label.line(points, fill=2, width=width, joint='curve')
  return np.asarray(image), np.asarray(mask)


# The kinds of set by name: each one's (image, mask) maker and class names.
KINDS = {
  'demo': (make_pair, CLASS_NAMES),
  'lateral': (make_lateral_pair, LATERAL_CLASS_NAMES),
  'thin': (make_thin_pair, THIN_CLASS_NAMES),
}


def write_split(
  path: str, count: int, seed: int, size: int, ignore_label: int, kind: str = 'demo'
) -> None:
  """`count` records of `kind` (a KINDS name) as one TFRecord file at `path`."""
  import tensorflow as tf

  rng = np.random.default_rng(seed)
  split = os.path.basename(os.path.dirname(path))
  make = KINDS[kind][0]
  with tf.io.TFRecordWriter(path) as writer:
    for i in range(count):
      image, mask = make(rng, size, ignore_label)
      example = data_format.make_example(
        data_format.encode_png(image),
        'png',
        size,
        size,
        3,
        f'{kind}/{split}/{i:05d}.png',
        data_format.encode_png(mask),
      )
      writer.write(example.SerializeToString())


def write_demo_data(
  output_dir: str,
  train_count: int = 192,
  eval_count: int = 48,
  size: int = 96,
  seed: int = 42,
  ignore_label: int = data_format.DEFAULT_IGNORE_LABEL,
  kind: str = 'demo',
) -> dict:
  """Writes OUTPUT/train/KIND.tfrecord and OUTPUT/eval/KIND.tfrecord; returns {split: path}."""
  paths = {}
  for split, count, split_seed in (('train', train_count, seed), ('eval', eval_count, seed + 1)):
    os.makedirs(os.path.join(output_dir, split), exist_ok=True)
    paths[split] = os.path.join(output_dir, split, f'{kind}.tfrecord')
    write_split(paths[split], count, split_seed, size, ignore_label, kind)
  return paths
