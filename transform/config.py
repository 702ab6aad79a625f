"""Transform settings, passed from the pipeline through the Transform component's `custom_config`,
and `setting`, the field helper every config dataclass of the project uses.

Kept apart from `preprocessing.py` because TFX re-imports (reloads) the module of the
`preprocessing_fn` it runs; a class defined there would exist twice in one process, and objects of the
old one could no longer be pickled for Beam.

Each field carries its command-line help and, where its values are a fixed set, its choices:
`pipeline.flags` makes one flag per field from them and `check_choices` validates the same choices,
so flags, settings and validation cannot drift apart.
"""
import dataclasses
from typing import Optional, Sequence

from transform import data_format

CHANNEL_COUNTS = (1, 3)


def setting(default, help_text: str, choices: Optional[Sequence] = None):
  """A config field with its flag's help text and, optionally, the values it may take."""
  metadata = {'help': help_text}
  if choices is not None:
    metadata['choices'] = tuple(choices)
  return dataclasses.field(default=default, metadata=metadata)


def check_choices(config) -> None:
  """ValueError naming the field when a field with choices holds another value."""
  for field in dataclasses.fields(config):
    choices = field.metadata.get('choices')
    value = getattr(config, field.name)
    if choices is not None and value not in choices:
      raise ValueError(f'{field.name} must be one of {", ".join(map(str, choices))}, not {value!r}')


@dataclasses.dataclass(frozen=True)
class TransformConfig:
  """How raw records become model inputs."""
  image_size: int = setting(64, 'model input height and width; Transform resizes to it')
  channels: int = setting(3, 'image channels after Transform', CHANNEL_COUNTS)
  num_classes: int = setting(4, 'classes including background (class 0)')
  ignore_label: int = setting(data_format.DEFAULT_IGNORE_LABEL,
                              'mask value left out of loss and metrics')

  def __post_init__(self):
    check_choices(self)
    data_format.check_label_settings(self.num_classes, self.ignore_label)
