"""Where a `--resize none` model's errors go: the large-image benchmark's crop model alone, its
confusion matrix on the eval scenes at their own size.

    .venv/bin/python benchmarks/crop_confusion.py [--size 256] [--steps 600]

`benchmarks/large_images.py`'s scenes (20 train, 3 eval, 1024x768), model, feed and `none` +
`whole` evaluation, with none of its other modes: trained alone in this process, so the random state
differs from the benchmark's run (which trains `stretch` first). Prints the per-class IoU and the
confusion matrix, rows ground truth, as counts and as shares of each row.
"""

import argparse
import os
import sys
import tempfile

import numpy as np
import tensorflow as tf

from trainer import export, iou
from trainer.config import TrainerConfig

import large_images
import tf_env  # noqa: F401  (first: sets up TensorFlow)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--size', type=int, default=256, help='model size (default: %(default)s)')
  parser.add_argument('--steps', type=int, default=600, help='train steps (default: %(default)s)')
  args = parser.parse_args(argv)
  classes = large_images.CLASSES
  with tempfile.TemporaryDirectory() as work:
    for split in ('train', 'eval'):
      os.makedirs(os.path.join(work, split))
    train, evaluation = (os.path.join(work, s, 'scenes.tfrecord') for s in ('train', 'eval'))
    large_images.write_split(train, 20, 768, 1024, seed=0)
    pairs = large_images.write_split(evaluation, 3, 768, 1024, seed=1)
    config = TrainerConfig.from_flat(
      image_size=args.size,
      num_classes=len(classes),
      class_names=','.join(classes),
      resize='none',
      batch_size=8,
      random_scale=True,
      seed=0,
    )
    model_dirs = large_images.train_and_export(
      config, train, evaluation, args.steps, os.path.join(work, 'none')
    )
    serve = tf.saved_model.load(model_dirs['whole']).signatures[export.serving_signature('whole')]
    matrix = np.zeros((len(classes),) * 2, np.int64)
    for png, mask in pairs:
      request = tf.constant([large_images.request(png)])
      ids = serve(examples=request)['class_ids'][0].numpy()[: mask.shape[0], : mask.shape[1]]
      matrix += iou.confusion_matrix(mask, ids, mask != large_images.IGNORE, len(classes))
  print(f'model size {args.size}, {args.steps} steps: mean IoU {iou.mean_iou(matrix):.3f}')
  print(
    'per class IoU: '
    + ', '.join(f'{name} {value:.3f}' for name, value in zip(classes, iou.per_class_iou(matrix)))
  )
  print('rows ground truth, columns prediction (' + ', '.join(classes) + '); share of each row:')
  print(np.round(matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1), 3))
  print('counts:')
  print(matrix)
  return 0


if __name__ == '__main__':
  sys.exit(main())
