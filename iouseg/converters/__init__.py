"""`iouseg convert`: image/mask folders or PASCAL VOC 2012 -> sharded TFRecords in the project's format.

    from iouseg.converters import convert, add_arguments, main

Choices, and why:
- Inputs. Folders: `images/` and `masks/` matched by file stem, either per split subfolder
  (`INPUT/<any name>/{images,masks}`) or flat (`INPUT/{images,masks}`, split into train/eval by
  --eval-fraction, default 0.2, ranked by a seeded hash so a seed always gives the same split). VOC:
  `ImageSets/Segmentation/{train,val}.txt`, with val written as split `eval`; ids listed in both are
  written to both, with a warning. Hidden files are not inputs.
- Accounting. One input is one record-to-be (a stem, or a list line). Each is either written once or
  listed under `skipped` with the file at fault and the reason, so written + skipped == inputs.
- Images are stored as their original PNG/JPEG bytes, never re-encoded; `image/channels` is what TF
  decodes from them (grayscale 1, RGB 3, RGBA 4). 16-bit PNG images are skipped with a reason rather
  than converted: any 16->8-bit mapping is a guess about the data (a fixed shift turns 12-bit
  microscopy almost black, per-image stretching makes intensities incomparable), so the user decides.
- Masks must be single-channel PNGs ('L', 'P' or 1-bit). Palette indices are the class ids. They are
  re-encoded as 8-bit grayscale PNG because TF's decode_png expands a palette into colours.
- Bad input (unpaired, undecodable, empty, wrong mask size, out-of-range ids, colour masks, 16-bit,
  images above Pillow's decompression-bomb limit, whose default stays on) is skipped and reported;
  --strict turns any skip into a failure that writes nothing.
- Output is written in a hidden staging folder beside OUTPUT and renamed into place when complete.
  Existing non-empty output is refused; --overwrite replaces only an earlier conversion (a folder with
  conversion_report.json). A run that writes no valid record fails and leaves nothing behind.
- Output paths are local (pathlib/os.rename); convert locally and copy to a bucket if needed.
"""

from iouseg.converters.command import add_arguments, main
from iouseg.converters.conversion import convert
from iouseg.converters.errors import ConversionError

__all__ = ['ConversionError', 'add_arguments', 'convert', 'main']
