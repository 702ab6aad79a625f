"""The converter's image and mask checks (decode.py) for bytes already in memory, e.g. from a record.

`decode.read_image` / `decode.read_mask` take a file path; these take the name to report and the bytes,
and apply the same rules with the same helpers and the same reasons: fully decoded, PNG or JPEG image
(MPO read as JPEG), no 16-bit PNG, grayscale/RGB/RGBA image, single-channel PNG mask, Pillow's
decompression-bomb limit on with its warning band made an error. `BadFile.path` holds the name given.
"""
import numpy as np

from iouseg.converters import decode
from iouseg.converters.decode import BadFile, SourceImage


def read_image_bytes(name, data: bytes) -> SourceImage:
  """What `decode.read_image` returns for a file holding `data`; BadFile(name, reason) otherwise."""
  if not data:
    raise BadFile(name, 'empty image (0 bytes)')
  image = decode._decode(name, data, 'image')  # pylint: disable=protected-access
  record_format = decode.RECORD_FORMATS.get(image.format)
  if record_format is None:
    raise BadFile(name, f'image is {image.format}, not PNG or JPEG')
  if decode._is_16_bit_png(data):  # pylint: disable=protected-access
    raise BadFile(name, '16-bit PNG image: convert it to 8-bit first, with the intensity scaling '
                        'that suits your data')
  channels = decode.IMAGE_CHANNELS_BY_MODE.get(image.mode)
  if channels is None:
    raise BadFile(name, f"unsupported image mode '{image.mode}' (expected grayscale, RGB or RGBA)")
  return SourceImage(data, record_format, image.height, image.width, channels)


def read_mask_bytes(name, data: bytes) -> np.ndarray:
  """What `decode.read_mask` returns for a file holding `data`: HxW uint8 class ids; or BadFile."""
  if not data:
    raise BadFile(name, 'empty mask (0 bytes)')
  image = decode._decode(name, data, 'mask')  # pylint: disable=protected-access
  if image.format != 'PNG':
    raise BadFile(name, f'mask is {image.format}, not PNG')
  if decode._is_16_bit_png(data):  # pylint: disable=protected-access
    raise BadFile(name, '16-bit PNG mask: class ids must be stored as 8-bit')
  if image.mode not in decode.MASK_MODES:
    bands = len(image.getbands())
    if bands > 1:
      raise BadFile(name, f"mask has {bands} channels (mode '{image.mode}'); masks must hold one class "
                          f'id per pixel (map a colour-coded mask to ids, or save it as a palette PNG)')
    raise BadFile(name, f"unsupported mask mode '{image.mode}' (expected 8-bit grayscale or palette)")
  return np.asarray(image, dtype=np.uint8)
