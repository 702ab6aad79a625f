"""Transform settings, passed from the pipeline through the Transform component's `custom_config`.

Kept apart from `preprocessing.py` because TFX re-imports (reloads) the module of the
`preprocessing_fn` it runs; a class defined there would exist twice in one process, and objects of the
old one could no longer be pickled for Beam.
"""
import dataclasses

from iouseg import data_format


@dataclasses.dataclass(frozen=True)
class TransformConfig:
  """image_size: output height and width; channels: 1 or 3; num_classes: one-hot depth;
  ignore_label: mask value that marks pixels to leave out of loss and metrics."""
  image_size: int = 64
  channels: int = 3
  num_classes: int = 4
  ignore_label: int = data_format.DEFAULT_IGNORE_LABEL
