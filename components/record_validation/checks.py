"""One serialized record -> valid, or the reason it is not: the converter's checks, applied to a record.

The image and the mask go through the converter's own rules (`image_checks.image_from_bytes`,
`image_checks.mask_from_bytes`, `image_checks.check_class_ids`), with the converter's reasons. Two rules are specific to a stored record:
- the mask must be an 8-bit grayscale PNG. The converter accepts palette and 1-bit masks from disk
  because it re-encodes every mask as 8-bit grayscale; stored as they are, TF's decode_png (what
  Transform uses) would turn palette indices into colours and 1-bit ids 0/1 into 0/255;
- image/height, image/width, image/channels and the format features, where present, must describe
  the bytes they come with.
"""

import dataclasses

import numpy as np
from google.protobuf import message
from PIL import Image
from tensorflow.core.example import example_pb2

from components.record_validation import unreadable
from transform import data_format, image_checks
from transform.image_checks import BadFile

_IHDR_BIT_DEPTH, _IHDR_COLOUR_TYPE = 24, 25
_PNG_GRAYSCALE, _PNG_PALETTE = 0, 3
# image/format values that name each Pillow format the converter accepts.
_FORMAT_NAMES = {'png': {'png'}, 'jpeg': {'jpeg', 'jpg'}}


@dataclasses.dataclass(frozen=True)
class Verdict:
  reason: str | None  # None: the record is valid.
  filename: str = ''  # The record's image/filename, '' when it has none or does not parse.
  # What the quarantine keeps: the record as it came, or for an unreadable stretch wrapped by
  # TolerantImportExampleGen, the stretch's raw bytes as they were in the input file.
  original: bytes | None = None
  # A name for a record without image/filename: the input file of an unreadable stretch.
  source: str = ''


class _Bad(Exception):
  pass


def check_record(data: bytes, num_classes: int, ignore_label: int) -> Verdict:
  """Never raises: anything unexpected becomes the record's reason."""
  try:
    example = example_pb2.Example.FromString(data)
  except message.DecodeError as error:
    return Verdict(f'not a tf.train.Example (the bytes do not parse: {error})', '', data)
  except Exception as error:
    return Verdict(f'not a tf.train.Example ({type(error).__name__}: {error})', '', data)
  wrapped = unreadable.parse(example)
  if wrapped is not None:
    raw, source_file, reason = wrapped
    return Verdict(reason, '', raw, source_file)
  filename = _filename(example)
  try:
    _check_example(example, num_classes, ignore_label)
  except _Bad as bad:
    return Verdict(str(bad), filename, data)
  except BadFile as bad:
    return Verdict(bad.reason, filename, data)
  except Exception as error:  # A crash must still name the record.
    return Verdict(
      f'unexpected error while checking ({type(error).__name__}: {error})', filename, data
    )
  return Verdict(None, filename, data)


def _check_example(example: example_pb2.Example, num_classes: int, ignore_label: int) -> None:
  features = example.features.feature
  image_bytes = _one_value(features, data_format.IMAGE_ENCODED, 'bytes_list')
  mask_bytes = _one_value(features, data_format.MASK_ENCODED, 'bytes_list')
  image = image_checks.image_from_bytes('image', image_bytes)
  _check_pixels('image', image.height * image.width)
  _check_declared(features, image)
  mask = image_checks.mask_from_bytes('mask', mask_bytes)
  _check_pixels('mask', mask.size)
  _check_mask_encoding(mask_bytes)
  if mask.shape != (image.height, image.width):
    raise _Bad(
      f'mask is {mask.shape[0]}x{mask.shape[1]} (HxW) but its image is {image.height}x{image.width}'
    )
  id_pixels = np.bincount(mask.ravel(), minlength=data_format.MASK_ID_RANGE)
  image_checks.check_class_ids('mask', id_pixels, num_classes, ignore_label)


def _check_pixels(role: str, pixels: int) -> None:
  """Pillow's warning band, again: the converter turns the warning into an error inside
  `warnings.catch_warnings`, which is process-wide state that threads of one Beam worker can undo
  for each other; this keeps such an image out even then."""
  if Image.MAX_IMAGE_PIXELS and pixels > Image.MAX_IMAGE_PIXELS:
    raise _Bad(
      f'{role} too large, possible decompression bomb: {pixels} pixels exceeds limit of '
      f'{Image.MAX_IMAGE_PIXELS} pixels'
    )


def _one_value(features, key: str, kind: str):
  if key not in features:
    raise _Bad(f'no {key} feature')
  found = features[key].WhichOneof('kind')
  if found is None:
    raise _Bad(f'{key} holds no value')
  if found != kind:
    raise _Bad(f'{key} is a {found}, expected a {kind}')
  values = getattr(features[key], kind).value
  if len(values) != 1:
    raise _Bad(f'{key} holds {len(values)} values, expected 1')
  return values[0]


def _filename(example: example_pb2.Example) -> str:
  feature = example.features.feature.get(data_format.IMAGE_FILENAME)
  if feature is None or feature.WhichOneof('kind') != 'bytes_list' or not feature.bytes_list.value:
    return ''
  return feature.bytes_list.value[0].decode('utf-8', 'replace')


def _check_declared(features, image: image_checks.SourceImage) -> None:
  """The size, channel and format features, where present, agree with the decoded image."""
  for key, actual in (
    (data_format.IMAGE_HEIGHT, image.height),
    (data_format.IMAGE_WIDTH, image.width),
    (data_format.IMAGE_CHANNELS, image.channels),
  ):
    if key in features:
      declared = _one_value(features, key, 'int64_list')
      if declared != actual:
        raise _Bad(f'{key} says {declared} but the image has {actual}')
  if data_format.IMAGE_FORMAT in features:
    declared = _one_value(features, data_format.IMAGE_FORMAT, 'bytes_list').decode(
      'utf-8', 'replace'
    )
    if declared.lower() not in _FORMAT_NAMES[image.format]:
      raise _Bad(f"{data_format.IMAGE_FORMAT} says '{declared}' but the image is {image.format}")
  if data_format.MASK_FORMAT in features:
    declared = _one_value(features, data_format.MASK_FORMAT, 'bytes_list').decode(
      'utf-8', 'replace'
    )
    if declared.lower() != 'png':
      raise _Bad(f"{data_format.MASK_FORMAT} says '{declared}' but masks are PNG")


def _check_mask_encoding(mask_png: bytes) -> None:
  """A mask that Pillow reads as ids but TF's decode_png would not: palette or below 8 bits."""
  colour_type, bit_depth = mask_png[_IHDR_COLOUR_TYPE], mask_png[_IHDR_BIT_DEPTH]
  if colour_type == _PNG_PALETTE:
    raise _Bad(
      'palette PNG mask: TF decode_png (used by Transform) turns palette indices into '
      'colours; store class ids as 8-bit grayscale (iouseg convert does)'
    )
  if colour_type == _PNG_GRAYSCALE and bit_depth != 8:
    raise _Bad(
      f'{bit_depth}-bit grayscale PNG mask: TF decode_png (used by Transform) scales it to '
      f'0..255, changing the class ids; store class ids as 8-bit grayscale'
    )
