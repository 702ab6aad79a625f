"""Transform settings, passed from the pipeline through the Transform component's `custom_config`,
and `setting`, the field helper every config dataclass of the project uses.

Kept apart from `preprocessing.py` because TFX re-imports (reloads) the module of the
`preprocessing_fn` it runs; a class defined there would exist twice in one process, and objects of the
old one could no longer be pickled for Beam.

Each field carries its command-line help and, where its values are a fixed set, its choices:
`pipeline.flags` makes one flag per field from them and `check_choices` validates the same choices,
so flags, settings and validation cannot drift apart.
"""

import collections.abc
import dataclasses
from collections.abc import Callable, Sequence

from transform import data_format

CHANNEL_COUNTS = (1, 3)
# 'stretch' resizes every image to SxS; 'pad' scales its long side to S, keeps the aspect ratio and
# pads the bottom and right (padded pixels are ignored in loss and metrics); 'none' keeps each image
# at its own size (the Trainer cuts SxS crops of it, inference runs on the whole image:
# docs/training.md#images-larger-than-the-model).
RESIZE_MODES = ('stretch', 'pad', 'none')


class LazyChoices(collections.abc.Sequence):
  """Choices read when first needed, e.g. names defined by a module that imports TensorFlow: the
  `iouseg` command builds every parser at start-up and must stay cheap."""

  def __init__(self, load: Callable[[], Sequence]):
    self._load = load
    self._values = None

  def _resolved(self) -> tuple:
    if self._values is None:
      self._values = tuple(self._load())
    return self._values

  def __getitem__(self, index):
    return self._resolved()[index]

  def __len__(self) -> int:
    return len(self._resolved())


def setting(default, help_text: str, choices: Sequence | Callable[[], Sequence] | None = None):
  """A config field with its flag's help text and, optionally, the values it may take (a sequence,
  or a function returning one, looked up when first needed)."""
  metadata = {'help': help_text}
  if choices is not None:
    metadata['choices'] = LazyChoices(choices) if callable(choices) else tuple(choices)
  return dataclasses.field(default=default, metadata=metadata)


def check_choices(config) -> None:
  """ValueError naming the field when a field with choices holds another value."""
  for field in dataclasses.fields(config):
    choices = field.metadata.get('choices')
    value = getattr(config, field.name)
    if choices is not None and value not in choices:
      raise ValueError(f'{field.name} must be one of {", ".join(map(str, choices))}, not {value!r}')


def check_common(config) -> None:
  """The checks every stage's config makes: choices, and at least two classes. Messages name the
  fields: `pipeline.flags` shows them as flags."""
  check_choices(config)
  if config.num_classes < 2:
    raise ValueError(
      f'num_classes must be at least 2 (background and one class), got {config.num_classes}'
    )


@dataclasses.dataclass(frozen=True)
class TransformConfig:
  """How raw records become model inputs."""

  image_size: int = setting(64, 'model input height and width; Transform resizes to it')
  channels: int = setting(3, 'image channels after Transform', CHANNEL_COUNTS)
  num_classes: int = setting(4, 'classes including background (class 0)')
  resize: str = setting(
    'stretch',
    'stretch every image to the model size, or pad: scale the long '
    'side to it, keep the aspect ratio, pad the rest (ignored), or none: keep each image at its '
    'own size (the Trainer trains on --image-size crops of it)',
    RESIZE_MODES,
  )
  ignore_label: int = setting(
    data_format.DEFAULT_IGNORE_LABEL, 'mask value left out of loss and metrics'
  )
  # One value for every stage: the Trainer (lateral pairs, docs/training.md), the Evaluator's
  # per-class metrics and the model card read it.
  class_names: str = setting(
    '',
    'comma-separated, background first; empty: class_0, class_1, ...; names with a side '
    '(left_X/right_X, X_l/X_r, lh/rh) are swapped by a mirroring augmentation',
  )

  def __post_init__(self):
    check_common(self)
    if self.image_size < 1:
      raise ValueError(f'image_size must be at least 1, got {self.image_size}')
    if self.num_classes >= data_format.MASK_ID_RANGE:
      raise ValueError(
        f'num_classes must be at most {data_format.MASK_ID_RANGE - 1} (8-bit masks '
        f'keep one value for the ignore label), got {self.num_classes}'
      )
    if 0 <= self.ignore_label < self.num_classes:
      raise ValueError(
        f'ignore_label {self.ignore_label} is a class id (num_classes '
        f'{self.num_classes}): use an ignore_label from {self.num_classes} to '
        f'{data_format.MASK_ID_RANGE - 1}, e.g. {data_format.DEFAULT_IGNORE_LABEL}'
      )
    data_format.check_label_settings(self.num_classes, self.ignore_label)
    if self.class_names and len(self.names) != self.num_classes:
      raise ValueError(
        f'class_names gives {len(self.names)} names for num_classes {self.num_classes}: '
        'one per class, background first'
      )

  @property
  def names(self) -> tuple:
    """The class names, in class-id order: `class_names`, or class_0, class_1, ..."""
    if self.class_names:
      return tuple(name.strip() for name in self.class_names.split(','))
    return tuple(f'class_{k}' for k in range(self.num_classes))
