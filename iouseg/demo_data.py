"""The bundled synthetic demo set: shapes on textured backgrounds, deterministic for a seed.

Class 0 is background, 1 disc, 2 square, 3 triangle. Discs are common and large, triangles rare and
small, so pixel frequencies are imbalanced the way real data is (background ~3/4 of pixels).
Each shape carries a 1-pixel band of the ignore label around it, like PASCAL VOC's void border.
"""

import os

import numpy as np
from PIL import Image, ImageDraw

from transform import data_format

CLASS_NAMES = ('background', 'disc', 'square', 'triangle')
NUM_CLASSES = len(CLASS_NAMES)
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
    fill = tuple(int(c) for c in np.clip(np.asarray(colour) + rng.normal(0, 25, 3), 0, 255))
    if class_id == 1:
      box = [cx - r, cy - r, cx + r, cy + r]
      paint.ellipse(box, fill=fill)
      label.ellipse(box, fill=class_id, outline=ignore_label, width=1)
    else:
      points = _polygon(class_id, cx, cy, r)
      paint.polygon(points, fill=fill)
      label.polygon(points, fill=class_id, outline=ignore_label)
  return np.asarray(image), np.asarray(mask)


def write_split(path: str, count: int, seed: int, size: int, ignore_label: int) -> None:
  """`count` records as one TFRecord file at `path`."""
  import tensorflow as tf

  rng = np.random.default_rng(seed)
  split = os.path.basename(os.path.dirname(path))
  with tf.io.TFRecordWriter(path) as writer:
    for i in range(count):
      image, mask = make_pair(rng, size, ignore_label)
      example = data_format.make_example(
        data_format.encode_png(image),
        'png',
        size,
        size,
        3,
        f'demo/{split}/{i:05d}.png',
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
) -> dict:
  """Writes OUTPUT/train/demo.tfrecord and OUTPUT/eval/demo.tfrecord; returns {split: path}."""
  paths = {}
  for split, count, split_seed in (('train', train_count, seed), ('eval', eval_count, seed + 1)):
    os.makedirs(os.path.join(output_dir, split), exist_ok=True)
    paths[split] = os.path.join(output_dir, split, 'demo.tfrecord')
    write_split(paths[split], count, split_seed, size, ignore_label)
  return paths
