"""A synthetic PASCAL-VOC-like set for the benchmarks: JPEG photos of 512x384 (or mixed sizes) with
PNG masks of 21 classes and a 5-pixel void band (255) around each object, in the project's format.

    .venv/bin/python benchmarks/voc_like.py --output /tmp/voc_like --train 2000 --eval 200

Objects are ellipses and boxes of random classes 1-20 on textured backgrounds, 1-4 per image,
covering about a quarter of the pixels, so the class balance is VOC's (background ~70%).
"""

import argparse
import io
import os
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from transform import data_format

NUM_CLASSES = 21
VOID_BAND = 5
SIZES = ((384, 512),)  # (height, width): VOC's most common size, landscape


def make_pair(rng: np.random.Generator, height: int, width: int):
  """(JPEG bytes of an RGB photo-like image, uint8 class-id mask [H, W])."""
  coarse = rng.uniform(60, 190, size=(height // 32 + 1, width // 32 + 1, 3)).astype(np.uint8)
  background = Image.fromarray(coarse).resize((width, height), Image.BILINEAR)
  image = background.filter(ImageFilter.GaussianBlur(2))
  mask = Image.new('L', (width, height), 0)
  paint, label = ImageDraw.Draw(image), ImageDraw.Draw(mask)
  for _ in range(int(rng.integers(1, 5))):
    class_id = int(rng.integers(1, NUM_CLASSES))
    h, w = rng.uniform(0.15, 0.5) * height, rng.uniform(0.15, 0.5) * width
    top, left = rng.uniform(0, height - h), rng.uniform(0, width - w)
    box = [left, top, left + w, top + h]
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    shape = paint.ellipse if class_id % 2 else paint.rectangle
    shape(box, fill=colour)
    (label.ellipse if class_id % 2 else label.rectangle)(
      box, fill=class_id, outline=data_format.DEFAULT_IGNORE_LABEL, width=VOID_BAND
    )
  pixels = np.clip(np.asarray(image, np.float32) + rng.normal(0, 8, (height, width, 3)), 0, 255)
  buffer = io.BytesIO()
  Image.fromarray(pixels.astype(np.uint8)).save(buffer, format='JPEG', quality=90)
  return buffer.getvalue(), np.asarray(mask)


def write_split(path: str, count: int, seed: int, sizes=SIZES) -> int:
  """`count` records in one TFRecord file; returns the bytes written."""
  import tensorflow as tf

  rng = np.random.default_rng(seed)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path) as writer:
    for i in range(count):
      height, width = sizes[i % len(sizes)]
      jpeg, mask = make_pair(rng, height, width)
      writer.write(
        data_format.make_example(
          jpeg, 'jpeg', height, width, 3, f'voc_like/{i:06d}.jpg', data_format.encode_png(mask)
        ).SerializeToString()
      )
  return os.path.getsize(path)


def write(output: str, train: int, eval_count: int, seed: int = 0, sizes=SIZES) -> dict:
  """OUTPUT/train/voc_like.tfrecord and OUTPUT/eval/voc_like.tfrecord; returns bytes per split."""
  return {
    split: write_split(os.path.join(output, split, 'voc_like.tfrecord'), count, seed + k, sizes)
    for k, (split, count) in enumerate((('train', train), ('eval', eval_count)))
  }


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--output', required=True)
  parser.add_argument('--train', type=int, default=2000)
  parser.add_argument('--eval', type=int, default=200)
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  print(write(args.output, args.train, args.eval, args.seed))
  return 0


if __name__ == '__main__':
  sys.exit(main())
