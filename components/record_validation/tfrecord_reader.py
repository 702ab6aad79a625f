"""Reading a TFRecord file record by record without giving up on the first damaged byte.

Beam's ReadFromTFRecord (what ImportExampleGen uses) raises on a bad CRC or a truncated file with a hex
dump of the record and neither the file nor the position, failing the whole job. This reader yields
every readable record and turns each damaged stretch into one `FileRecord` with `error` set, naming
the byte offset, and the raw bytes of the stretch in `data`:
- a record whose payload fails its CRC (its length field is intact): that record is reported and
  reading goes on with the next one;
- a length field that fails its CRC: where the record ends is unknown, so the rest of the file is one
  unreadable stretch;
- a file that ends inside a record (truncated), or a compressed stream that ends early or is corrupt:
  the rest of the file is one unreadable stretch.
Offsets count bytes of the decompressed stream for compressed files. An empty file yields nothing.

TFRecord framing: uint64 length, uint32 masked CRC-32C of the length, payload, uint32 masked CRC of
the payload (little endian).
"""

import dataclasses
import gzip
import struct
import zlib
from collections.abc import Iterator

from apache_beam.io import filesystem
from apache_beam.io.filesystems import FileSystems
from tfx.dsl.io import fileio

_HEADER_BYTES = 12
_FOOTER_BYTES = 4
_MASK_DELTA = 0xA282EAD8
# Reads of a record body are chunked so that a length field that passes its CRC but is still absurd
# (a crafted file) cannot make us allocate more than the file really holds.
_CHUNK_BYTES = 16 << 20


@dataclasses.dataclass(frozen=True)
class FileRecord:
  index: int  # Position among the file's records (an unreadable stretch counts as one).
  offset: int  # Byte offset of the record's header in the (decompressed) file.
  data: bytes  # The payload; for an unreadable stretch, its raw bytes as they are in the file.
  error: str | None = None  # Why the stretch is unreadable; None for a good record.


def _crc32c_function():
  try:
    import google_crc32c

    return google_crc32c.value
  except ImportError:  # Beam's own dependency; pure Python when its C extension is missing.
    import crcmod.predefined

    return crcmod.predefined.mkPredefinedCrcFun('crc-32c')


_crc32c = _crc32c_function()


def masked_crc32c(data: bytes) -> int:
  crc = _crc32c(data)
  return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def encode_record(data: bytes) -> bytes:
  """`data` framed as one TFRecord (what tf.io.TFRecordWriter writes); for tests and tools."""
  length = struct.pack('<Q', len(data))
  return (
    length
    + struct.pack('<I', masked_crc32c(length))
    + data
    + struct.pack('<I', masked_crc32c(data))
  )


def _open(path: str):
  """(binary file object, compressed?) for a path Beam's ReadFromTFRecord would read the same way:
  compression from the file name. gzip goes through Python's gzip module, which (unlike Beam's reader)
  notices a stream cut at a record boundary."""
  compression = filesystem.CompressionTypes.detect_compression_type(path)
  if compression == filesystem.CompressionTypes.UNCOMPRESSED:
    return fileio.open(path, 'rb'), False
  if compression == filesystem.CompressionTypes.GZIP:
    return gzip.GzipFile(fileobj=fileio.open(path, 'rb'), mode='rb'), True
  return FileSystems.open(path, compression_type=compression), True


def _read_exactly(handle, count: int) -> bytes:
  parts, missing = [], count
  while missing > 0:
    part = handle.read(min(missing, _CHUNK_BYTES))
    if not part:
      break
    parts.append(part)
    missing -= len(part)
  return b''.join(parts)


def _read_rest(handle) -> bytes:
  try:
    return handle.read()
  except (OSError, EOFError, zlib.error, ValueError):
    return b''


def read_file(path: str) -> Iterator[FileRecord]:
  """The file's records in order, each damaged stretch as one FileRecord with `error` set."""
  try:
    handle, compressed = _open(path)
  except Exception as error:  # Missing, unreadable, bad name...
    yield FileRecord(0, 0, b'', f'cannot open the file: {error}')
    return
  where = 'byte {} of the decompressed stream' if compressed else 'byte {}'
  index, offset = 0, 0
  with handle:
    while True:
      try:
        header = _read_exactly(handle, _HEADER_BYTES)
        if not header:
          return
        if len(header) < _HEADER_BYTES:
          yield FileRecord(
            index,
            offset,
            header,
            f'truncated file: it ends {len(header)} bytes into the record header at '
            f'{where.format(offset)}',
          )
          return
        length, length_crc = struct.unpack('<QI', header)
        if masked_crc32c(header[:8]) != length_crc:
          rest = _read_rest(handle)
          yield FileRecord(
            index,
            offset,
            header + rest,
            f'corrupt record header at {where.format(offset)} (length CRC mismatch): '
            f'where the record ends is unknown, so the remaining '
            f'{len(header) + len(rest)} bytes of the file are unreadable',
          )
          return
        body = _read_exactly(handle, length + _FOOTER_BYTES)
        if len(body) < length + _FOOTER_BYTES:
          yield FileRecord(
            index,
            offset,
            header + body,
            f'truncated file: the record at {where.format(offset)} declares {length} '
            f'bytes but the file ends {len(body)} bytes later',
          )
          return
        payload, (payload_crc,) = body[:length], struct.unpack('<I', body[length:])
      except (OSError, EOFError, zlib.error, ValueError) as error:
        # A compressed stream that ends early (EOFError) or is corrupt (OSError / zlib.error).
        yield FileRecord(
          index,
          offset,
          b'',
          f'cannot decompress the file from {where.format(offset)} on '
          f'({type(error).__name__}: {error}); records after that point are lost',
        )
        return
      if masked_crc32c(payload) != payload_crc:
        yield FileRecord(
          index,
          offset,
          header + body,
          f'corrupt record at {where.format(offset)}: its {length} bytes fail their CRC check',
        )
      else:
        yield FileRecord(index, offset, payload)
      index += 1
      offset += _HEADER_BYTES + length + _FOOTER_BYTES
