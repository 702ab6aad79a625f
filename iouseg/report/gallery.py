"""The report's gallery: every eval record segmented by the model the Evaluator judged, worst first.

Records and pixels are the ones TFMA scored: the Evaluator's examples (eval split), the model's
`model_resolution` probabilities against its `transform_features` one-hot label. So each image's
`SegmentationSums` add up to the confusion matrix in the TFMA output, which the report checks.
"""
import dataclasses
import glob
import io
import math
import os
from typing import List

import numpy as np
import tensorflow as tf
from PIL import Image
from tfx.utils import path_utils

from components import iou_metric
from transform import data_format
from trainer import decode, iou
from trainer.colours import IGNORE_COLOUR, class_colours
from transform import features

EVAL_SPLIT = 'eval'
_BATCH = 16
_OPACITY = 0.7


@dataclasses.dataclass
class Sample:
  name: str  # the record's image/filename
  image: np.ndarray  # uint8 [H, W, 3], the record's own image
  true_ids: np.ndarray  # [S, S] at the model's resolution, as scored
  valid: np.ndarray  # [S, S] False on ignored pixels
  pred_ids: np.ndarray  # [S, S]
  sums: iou_metric.SegmentationSums

  @property
  def mean_iou(self) -> float:
    """Over the classes in this image's labels or predictions; NaN when no pixel is labelled."""
    return iou.mean_iou(self.sums.matrix)


def eval_records(examples_uri: str) -> List[bytes]:
  files = sorted(glob.glob(os.path.join(examples_uri, f'Split-{EVAL_SPLIT}', '*')))
  if not files:
    raise FileNotFoundError(f'no {EVAL_SPLIT} split under {examples_uri}')
  compression = 'GZIP' if files[0].endswith('.gz') else ''
  return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type=compression)]


def _image(record: bytes) -> tuple:
  example = tf.train.Example.FromString(record)
  feature = example.features.feature
  name = feature[data_format.IMAGE_FILENAME].bytes_list.value[0].decode()
  image = Image.open(io.BytesIO(feature[data_format.IMAGE_ENCODED].bytes_list.value[0]))
  return name, np.asarray(image.convert('RGB'))


def segment(model_uri: str, records: List[bytes]) -> List[Sample]:
  """Every record through the Evaluator's model artifact (its serving SavedModel)."""
  model = tf.saved_model.load(path_utils.serving_model_path(model_uri))
  samples = []
  for start in range(0, len(records), _BATCH):
    batch = tf.constant(records[start:start + _BATCH])
    probabilities = model.signatures['model_resolution'](examples=batch)['probabilities'].numpy()
    labels = model.signatures['transform_features'](examples=batch)[features.LABEL].numpy()
    for record, label, probability in zip(records[start:start + _BATCH], labels, probabilities):
      true_ids, valid = decode.labels_to_class_ids_np(label)
      samples.append(Sample(*_image(record), true_ids, valid, decode.class_ids_np(probability),
                            iou_metric.segmentation_sums(label, probability)))
  return samples


def worst_first(samples: List[Sample]) -> List[Sample]:
  """Lowest mean IoU first; images with no labelled pixel (nothing to score) last."""
  return sorted(samples, key=lambda s: (math.isnan(s.mean_iou), s.mean_iou))


def _overlay(image: np.ndarray, ids: np.ndarray, colours: np.ndarray,
             ignored: np.ndarray) -> np.ndarray:
  """The mask painted over a grey copy of the image: the image's own colours would blend with the
  class colours into shades no legend explains."""
  size = image.shape[1], image.shape[0]
  ids = np.asarray(Image.fromarray(ids.astype(np.uint8)).resize(size, Image.NEAREST))
  ignored = np.asarray(Image.fromarray(ignored).resize(size, Image.NEAREST))
  painted = (ids > 0) | ignored
  tint = np.where(ignored[..., None], np.array(IGNORE_COLOUR), colours[ids])
  out = np.repeat(np.asarray(Image.fromarray(image).convert('L'), np.float64)[..., None], 3, axis=-1)
  out[painted] = (1 - _OPACITY) * out[painted] + _OPACITY * tint[painted]
  return out.astype(np.uint8)


def panel_png(sample: Sample, num_classes: int, size: int) -> bytes:
  """PNG of three panels of `size` pixels: the image, its ground truth, the model's prediction;
  masks in TensorBoard's class colours (`trainer.tensorboard_images`), background unpainted."""
  image = np.asarray(Image.fromarray(sample.image).resize((size, size), Image.BILINEAR))
  colours = class_colours(num_classes)
  no_ignore = np.zeros_like(sample.valid)
  panels = [image, _overlay(image, np.where(sample.valid, sample.true_ids, 0), colours, ~sample.valid),
            _overlay(image, sample.pred_ids, colours, no_ignore)]
  gap = np.full((size, 4, 3), 255, dtype=np.uint8)
  strip = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
  buffer = io.BytesIO()
  Image.fromarray(strip).save(buffer, format='PNG', optimize=True)
  return buffer.getvalue()
