"""Reading one image or mask with Pillow, and saying exactly why a file is unusable.

Shared by the converter (files on disk) and the RecordValidator (bytes inside a record), so a file
and the record made of it pass or fail by the same rules, with the same reasons.

Everything is fully decoded (not just its header read) so truncated files are caught here rather
than in the middle of training. Pillow's decompression-bomb limit stays at its default; its warning
band (between MAX_IMAGE_PIXELS and twice that) is made an error too, so a huge image is skipped with a
reason instead of being half-accepted.
"""

import dataclasses
import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# Pillow mode -> channels that TF's decode_png/decode_jpeg yields for the same bytes.
IMAGE_CHANNELS_BY_MODE = {'1': 1, 'L': 1, 'RGB': 3, 'RGBA': 4}
# 'P' indices are the class ids (never expanded to palette colours); '1' reads as 0/1.
MASK_MODES = ('1', 'L', 'P')
# Pillow format -> the record's image/format. Phone cameras write JPEGs that Pillow names MPO
# (multi-picture); their first picture is an ordinary JPEG, which is what TF decodes.
RECORD_FORMATS = {'PNG': 'png', 'JPEG': 'jpeg', 'MPO': 'jpeg'}
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_BIT_DEPTH_OFFSET = 24  # 8-byte signature, IHDR length and type, width, height, then bit depth.


class BadFile(Exception):
  """A file that cannot go into a record; `reason` says why in words a user can act on."""

  def __init__(self, path: Path, reason: str):
    super().__init__(f'{path}: {reason}')
    self.path = path
    self.reason = reason


@dataclasses.dataclass(frozen=True)
class SourceImage:
  data: bytes  # The file's bytes, stored as they are: no re-encoding, no loss.
  format: str
  height: int
  width: int
  channels: int


def read_image(path: Path) -> SourceImage:
  return image_from_bytes(path, _read_bytes(path))


def image_from_bytes(name, data: bytes) -> SourceImage:
  """The checks of `read_image` on bytes already in memory (e.g. a record's); `name` is reported."""
  if not data:
    raise BadFile(name, 'empty image (0 bytes)')
  image = _decode(name, data, 'image')
  record_format = RECORD_FORMATS.get(image.format)
  if record_format is None:
    raise BadFile(name, f'image is {image.format}, not PNG or JPEG')
  if _is_16_bit_png(data):
    # Going to 8 bits needs an intensity mapping that depends on the data (12-bit microscopy in a
    # 16-bit file would turn almost black under a fixed shift), so the user picks it, not the converter.
    raise BadFile(
      name,
      '16-bit PNG image: convert it to 8-bit first, with the intensity scaling '
      'that suits your data',
    )
  channels = IMAGE_CHANNELS_BY_MODE.get(image.mode)
  if channels is None:
    raise BadFile(name, f"unsupported image mode '{image.mode}' (expected grayscale, RGB or RGBA)")
  return SourceImage(data, record_format, image.height, image.width, channels)


def read_mask(path: Path) -> np.ndarray:
  """The mask's class ids as an HxW uint8 array."""
  return mask_from_bytes(path, _read_bytes(path))


def mask_from_bytes(name, data: bytes) -> np.ndarray:
  """The checks of `read_mask` on bytes already in memory (e.g. a record's); `name` is reported."""
  if not data:
    raise BadFile(name, 'empty mask (0 bytes)')
  image = _decode(name, data, 'mask')
  if image.format != 'PNG':
    raise BadFile(name, f'mask is {image.format}, not PNG')
  if _is_16_bit_png(data):
    raise BadFile(name, '16-bit PNG mask: class ids must be stored as 8-bit')
  if image.mode not in MASK_MODES:
    bands = len(image.getbands())
    if bands > 1:
      raise BadFile(
        name,
        f"mask has {bands} channels (mode '{image.mode}'); masks must hold one class "
        f'id per pixel (map a colour-coded mask to ids, or save it as a palette PNG)',
      )
    raise BadFile(
      name, f"unsupported mask mode '{image.mode}' (expected 8-bit grayscale or palette)"
    )
  return np.asarray(image, dtype=np.uint8)


def _read_bytes(path: Path) -> bytes:
  try:
    data = path.read_bytes()
  except OSError as error:
    raise BadFile(path, f'cannot read file: {error.strerror}') from None
  if not data:
    raise BadFile(path, 'empty file (0 bytes)')
  return data


def _decode(path: Path, data: bytes, role: str) -> Image.Image:
  with warnings.catch_warnings():
    warnings.simplefilter('error', Image.DecompressionBombWarning)
    try:
      image = Image.open(io.BytesIO(data))
      image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
      raise BadFile(path, f'{role} too large, possible decompression bomb: {error}') from None
    except UnidentifiedImageError:
      raise BadFile(path, f'cannot decode {role}: not an image format Pillow recognises') from None
    except (
      Exception
    ) as error:  # Malformed data raises OSError, SyntaxError, ValueError, EOFError...
      raise BadFile(path, f'cannot decode {role}: {error}') from None
  return image


def _is_16_bit_png(data: bytes) -> bool:
  # Pillow opens 16-bit RGB(A) PNGs as 8-bit 'RGB'/'RGBA', so only the header tells.
  return (
    data.startswith(_PNG_SIGNATURE)
    and len(data) > _PNG_BIT_DEPTH_OFFSET
    and data[_PNG_BIT_DEPTH_OFFSET] == 16
  )


def check_class_ids(name, id_pixels: np.ndarray, num_classes: int, ignore_label: int) -> None:
  """BadFile naming `name` when the mask's histogram `id_pixels` (pixels per id 0..255) holds ids
  that are neither a class (0..num_classes-1) nor the ignore label."""
  out_of_range = [
    int(i) for i in np.flatnonzero(id_pixels) if i >= num_classes and i != ignore_label
  ]
  if out_of_range:
    raise BadFile(
      name,
      f'class ids {out_of_range} out of range: --num-classes {num_classes} '
      f'allows 0..{num_classes - 1}, plus the ignore label {ignore_label}',
    )
