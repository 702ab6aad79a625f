"""The report's gallery: every eval record segmented by the model the Evaluator judged, worst first.

Records and pixels are the ones TFMA scored: the Evaluator's examples (eval split), the model's
`serving_default` class ids (each image's own size) against the record's mask at its own size. So
each image's confusion matrix, counted here, adds up to the confusion matrix in the TFMA output,
which the report checks.
"""

import dataclasses
import glob
import io
import math
import os

import numpy as np
import tensorflow as tf
from PIL import Image
from tfx.utils import path_utils

from trainer import iou
from trainer.colours import IGNORE_COLOUR, class_colours
from transform import data_format

EVAL_SPLIT = 'eval'
_BATCH = 16
_OPACITY = 0.7


@dataclasses.dataclass
class Sample:
  name: str  # the record's image/filename
  image: np.ndarray  # uint8 [H, W, 3], the record's own image
  true_ids: np.ndarray  # [H, W] the record's mask, at the image's own resolution, as scored
  valid: np.ndarray  # [H, W] False on ignored pixels
  pred_ids: np.ndarray  # [H, W]
  matrix: np.ndarray  # int64 [C, C] of this image, rows ground truth, columns prediction

  @property
  def mean_iou(self) -> float:
    """Over the classes in this image's labels or predictions; NaN when no pixel is labelled."""
    return iou.mean_iou(self.matrix)


def eval_records(examples_uri: str) -> list[bytes]:
  files = sorted(glob.glob(os.path.join(examples_uri, f'Split-{EVAL_SPLIT}', '*')))
  if not files:
    raise FileNotFoundError(f'no {EVAL_SPLIT} split under {examples_uri}')
  compression = 'GZIP' if files[0].endswith('.gz') else ''
  return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type=compression)]


def _image_and_mask(record: bytes) -> tuple:
  example = tf.train.Example.FromString(record)
  feature = example.features.feature
  name = feature[data_format.IMAGE_FILENAME].bytes_list.value[0].decode()
  image = Image.open(io.BytesIO(feature[data_format.IMAGE_ENCODED].bytes_list.value[0]))
  mask = Image.open(io.BytesIO(feature[data_format.MASK_ENCODED].bytes_list.value[0]))
  return name, np.asarray(image.convert('RGB')), np.asarray(mask, dtype=np.int64)


def segment(model_uri: str, records: list[bytes]) -> list[Sample]:
  """Every record through the Evaluator's model artifact (its serving SavedModel)."""
  model = tf.saved_model.load(path_utils.serving_model_path(model_uri))
  samples = []
  for start in range(0, len(records), _BATCH):
    batch = records[start : start + _BATCH]
    outputs = model.signatures['serving_default'](examples=tf.constant(batch))
    num_classes = outputs['probabilities'].shape[-1]
    for record, class_ids, height, width in zip(
      batch, outputs['class_ids'].numpy(), outputs['height'].numpy(), outputs['width'].numpy()
    ):
      name, image, true_ids = _image_and_mask(record)
      pred_ids = class_ids[:height, :width]  # the batch is padded to its largest image
      valid = true_ids < num_classes  # not the ignore label
      samples.append(
        Sample(
          name,
          image,
          true_ids,
          valid,
          pred_ids,
          iou.confusion_matrix(true_ids, pred_ids, valid, num_classes),
        )
      )
  return samples


def worst_first(samples: list[Sample]) -> list[Sample]:
  """Lowest mean IoU first; images with no labelled pixel (nothing to score) last."""
  return sorted(samples, key=lambda s: (math.isnan(s.mean_iou), s.mean_iou))


def _overlay(
  image: np.ndarray, ids: np.ndarray, colours: np.ndarray, ignored: np.ndarray
) -> np.ndarray:
  """The mask painted over a grey copy of the image: the image's own colours would blend with the
  class colours into shades no legend explains."""
  size = image.shape[1], image.shape[0]
  ids = np.asarray(Image.fromarray(ids.astype(np.uint8)).resize(size, Image.NEAREST))
  ignored = np.asarray(Image.fromarray(ignored).resize(size, Image.NEAREST))
  painted = (ids > 0) | ignored
  tint = np.where(ignored[..., None], np.array(IGNORE_COLOUR), colours[ids])
  out = np.repeat(
    np.asarray(Image.fromarray(image).convert('L'), np.float64)[..., None], 3, axis=-1
  )
  out[painted] = (1 - _OPACITY) * out[painted] + _OPACITY * tint[painted]
  return out.astype(np.uint8)


def panel_png(sample: Sample, num_classes: int, size: int) -> bytes:
  """PNG of three panels of `size` pixels: the image, its ground truth, the model's prediction;
  masks in TensorBoard's class colours (`trainer.tensorboard_images`), background unpainted."""
  image = np.asarray(Image.fromarray(sample.image).resize((size, size), Image.BILINEAR))
  colours = class_colours(num_classes)
  no_ignore = np.zeros_like(sample.valid)
  panels = [
    image,
    _overlay(image, np.where(sample.valid, sample.true_ids, 0), colours, ~sample.valid),
    _overlay(image, sample.pred_ids, colours, no_ignore),
  ]
  gap = np.full((size, 4, 3), 255, dtype=np.uint8)
  strip = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
  buffer = io.BytesIO()
  Image.fromarray(strip).save(buffer, format='PNG', optimize=True)
  return buffer.getvalue()
