"""Trainer settings, passed from the pipeline through the Trainer's `custom_config` dict.

One tree, grouped by concern as the TF Model Garden's segmentation task config is: `data` (the
Transform's own `TransformConfig`, so both stages read one value of each shared setting), `model`,
`augmentation`, `losses`, `optimizer` and `runtime`. Leaf names are unique across the groups, so a
setting has one flat name too (`image_size`, `learning_rate`, ...): its flag's, and what
`TrainerConfig.from_flat` and `replace` take.

Fields are `transform.config.setting`s: each carries its flag's help and choices (see there). Each
group checks its own fields in its `__post_init__`; rules across groups are `TrainerConfig`'s.
"""

import dataclasses

from trainer import lateral
from transform.config import TransformConfig, check_choices, setting

HEAD_INITS = ('zeros', 'prior')
DISTRIBUTIONS = ('mirrored', 'multi_worker')
# Learning-rate schedules over the run's train steps (trainer/schedules.py).
LR_SCHEDULES = ('constant', 'poly', 'cosine')
# The network's encoder: 'fcn' is trainer/model.py's own, the others tf_keras applications under a
# U-Net decoder (trainer/encoders.py).
ENCODERS = ('fcn', 'mobilenet_v2', 'resnet50', 'efficientnet_b0')
# What every application encoder divides the image size by: five stride-2 stages.
APPLICATION_STRIDE = 32
# How a model trained on crops (`--resize none`) predicts an image of any size (trainer/inference.py).
INFERENCE_MODES = ('whole', 'slide')


def parse_flip_swap(text: str, names) -> tuple:
  """'3:4,5:6' -> ((3, 4), (5, 6)): pairs of classes whose channels a mirroring augmentation
  swaps, each end a class id or a class name (`names`, in class-id order, or a class count for
  class_0, class_1, ...); 'none' (or '') -> ().
  ValueError on an unknown class, a class in two pairs or a class paired with itself."""
  if text.strip().lower() == lateral.NO_SWAP:
    return ()
  if isinstance(names, int):  # a class count: the default names
    names = tuple(f'class_{k}' for k in range(names))
  index = {name: k for k, name in enumerate(names)}
  pairs, seen = [], set()
  for item in filter(None, (part.strip() for part in text.split(','))):
    ends = item.split(':')
    if len(ends) != 2:
      raise ValueError(f'flip_swap {item!r}: expected LEFT:RIGHT, e.g. 3:4')
    ids = []
    for end in (end.strip() for end in ends):
      if end in index:
        ids.append(index[end])
      elif end.removeprefix('class_').isdigit():  # an id, or its default name
        ids.append(int(end.removeprefix('class_')))
      else:
        raise ValueError(
          f'flip_swap {item!r}: {end!r} is neither a class id (0..{len(names) - 1}) nor a '
          f'class name ({", ".join(names)})'
        )
    if any(k >= len(names) for k in ids) or ids[0] == ids[1] or seen & set(ids):
      raise ValueError(
        f'flip_swap {item!r}: ids must be distinct classes below num_classes '
        f'{len(names)}, each in one pair'
      )
    seen |= set(ids)
    pairs.append(tuple(ids))
  return tuple(pairs)


def _loss_names():
  from trainer.losses import LOSS_NAMES  # imports TensorFlow: only once the choices are read

  return LOSS_NAMES


def _at_least_one(config, *names) -> None:
  for name in names:
    if getattr(config, name) < 1:
      raise ValueError(f'{name} must be at least 1, got {getattr(config, name)}')


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The network's shape and start.

  head_init: 'zeros' is the default because the soft IoU's gradient reaches a logit through
  sigmoid'(z) = p(1 - p): a rare class started at its small pixel prior gets almost no gradient and
  is not learnt, while started at p = 0.5 it is (docs/loss_study.md).
  """

  base_filters: int = setting(16, 'width of the first encoder stage; each deeper stage doubles it')
  depth: int = setting(3, 'down-sampling stages of the encoder')
  head_init: str = setting(
    'zeros', "initial sigmoid bias: 0 for every class, or each class's pixel frequency", HEAD_INITS
  )
  encoder: str = setting(
    'fcn',
    "the network's encoder: fcn (this project's small U-Net, sized by --base-filters and "
    '--depth) or a tf_keras application under a U-Net decoder --base-filters wide '
    '(docs/encoders.md)',
    ENCODERS,
  )
  encoder_weights: str = setting(
    '',
    'a Keras .h5 weights file of the --encoder application without its top (as tf_keras caches '
    'them in ~/.keras/models), or assets.extra/encoder_weights.h5 of a model this project '
    "exported; a local path or a URI the Trainer reads (gs://...). '': random initial weights",
  )
  freeze_encoder_steps: int = setting(
    0, 'the encoder is frozen (batch norm in inference mode) for the first this many train steps'
  )
  inference: str = setting(
    'whole',
    'with --resize none, how the exported model predicts an image of its own size: whole (the '
    'network on the whole image, padded to a multiple of its stride) or slide (--image-size '
    'windows, probabilities averaged where they overlap; bounded memory for any size)',
    INFERENCE_MODES,
  )
  slide_overlap: float = setting(
    1 / 3, 'with --inference slide, the fraction of a window its neighbour overlaps'
  )

  def __post_init__(self):
    check_choices(self)
    _at_least_one(self, 'base_filters')
    if self.depth < 0:
      raise ValueError(f'depth must be >= 0, got {self.depth}')
    if self.freeze_encoder_steps < 0:
      raise ValueError(f'freeze_encoder_steps must be >= 0, got {self.freeze_encoder_steps}')
    if self.encoder == 'fcn' and (self.encoder_weights or self.freeze_encoder_steps):
      raise ValueError(
        'encoder_weights and freeze_encoder_steps need an application encoder: add --encoder '
        f'{" or --encoder ".join(ENCODERS[1:])}'
      )
    if not 0 <= self.slide_overlap < 1:
      raise ValueError(f'slide_overlap must be from 0 to below 1, got {self.slide_overlap}')


@dataclasses.dataclass(frozen=True)
class AugmentationConfig:
  """The train split's augmentation (docs/training.md#the-training-recipe); `trainer.augment` runs
  it and takes its defaults from here alone. The eval split is never augmented."""

  augment: bool = setting(
    True,
    'augment the train split as the settings below say; '
    '--no-augment: no augmentation at all, whatever they say',
  )
  random_scale: bool = setting(
    False,
    'augmentation: scale by a random factor in [--min-scale, '
    '--max-scale], then crop or pad (padding ignored) back to the model '
    'size',
  )
  min_scale: float = setting(0.5, 'augmentation: smallest random scale of --random-scale')
  max_scale: float = setting(2.0, 'augmentation: largest random scale of --random-scale')
  crop_cat_max_ratio: float = setting(
    1.0,
    'with --resize none, draw a train crop again (up to 10 crops) while one class covers this '
    "fraction or more of its labelled pixels, or it holds one class (MMSegmentation's "
    'cat_max_ratio; also without --augment); 1: never',
  )
  horizontal_flip: bool = setting(True, 'augmentation: random horizontal flip of half the images')
  vertical_flip: bool = setting(False, 'augmentation: also flip upside down at random')
  rotate90: bool = setting(False, 'augmentation: also rotate by a random multiple of 90 degrees')
  flip_swap: str = setting(
    '',
    "classes with a side as LEFT:RIGHT ids or names, e.g. '3:4,5:6': their labels swap when "
    'an image is mirrored. Class names that name sides (left_X/right_X, X_left/X_right, '
    'l_X/r_X, X_l/X_r, lh/rh; any of _ - . or space) are swapped without it, and a class whose '
    'train pixels sit on one side stops the Trainer (docs/training.md#classes-with-a-side); '
    f"'{lateral.NO_SWAP}': swap nothing, no check",
  )
  photometric: bool = setting(
    False,
    'augmentation: random brightness, contrast, gamma (and saturation for 3 channels) of the image',
  )

  def __post_init__(self):
    if not 0 < self.min_scale <= self.max_scale:
      raise ValueError(f'need 0 < min_scale <= max_scale, not {self.min_scale}, {self.max_scale}')
    if not 0 < self.crop_cat_max_ratio <= 1:  # NaN too
      raise ValueError(
        f'crop_cat_max_ratio must be above 0 and at most 1, got {self.crop_cat_max_ratio}'
      )


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """The training loss."""

  # The per-class soft IoU plus cross-entropy (nnU-Net's compound): the loss study's rule picks it
  # over every set; the soft IoU alone stalls where two classes saturate alike (a lateral pair).
  loss: str = setting(
    'cross_entropy+soft_iou_per_class',
    "training loss (docs/loss_study.md); 'FIRST>SECOND' "
    'trains with FIRST for --loss-switch of the steps, then SECOND',
    _loss_names,
  )
  loss_switch: float = setting(
    0.3, "fraction of the train steps a 'FIRST>SECOND' loss trains with FIRST"
  )
  cross_entropy_weight: float = setting(
    1.0,
    "weight of the cross-entropy term of 'cross_entropy+soft_iou' and "
    "'cross_entropy+soft_iou_per_class'",
  )

  def __post_init__(self):
    check_choices(self)
    if not 0 <= self.loss_switch <= 1:
      raise ValueError(
        f'loss_switch must be a fraction of the train steps, from 0 to 1, got {self.loss_switch}'
      )
    if not self.cross_entropy_weight >= 0:  # NaN too
      raise ValueError(f'cross_entropy_weight must be >= 0, got {self.cross_entropy_weight}')


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """Adam (AdamW with weight decay) and its learning rate over the train steps."""

  learning_rate: float = setting(3e-3, "Adam's step size")
  lr_schedule: str = setting(
    'constant',
    'learning rate over the train steps: constant, poly '
    '(power 0.9, to 0 at the last step) or cosine (to 0)',
    LR_SCHEDULES,
  )
  warmup_steps: int = setting(
    0, 'linear learning-rate warm-up from 0 over this many steps, then the schedule'
  )
  weight_decay: float = setting(
    0.0, 'decoupled weight decay (AdamW) when > 0; batch-norm and bias variables are not decayed'
  )
  encoder_lr_multiplier: float = setting(
    1.0, "the application encoder's learning rate is the learning rate times this (0 < x <= 1)"
  )

  def __post_init__(self):
    check_choices(self)
    if not self.learning_rate > 0:  # NaN too
      raise ValueError(f'learning_rate must be > 0, got {self.learning_rate}; e.g. 3e-3')
    if self.warmup_steps < 0 or not self.weight_decay >= 0:
      raise ValueError(
        f'warmup_steps and weight_decay must be >= 0, got {self.warmup_steps}, {self.weight_decay}'
      )
    if not 0 < self.encoder_lr_multiplier <= 1:  # NaN too
      raise ValueError(
        f'encoder_lr_multiplier must be > 0 and <= 1, got {self.encoder_lr_multiplier}; e.g. 0.1'
      )


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
  """How the training runs: batches, epochs, seed, devices, caching and which weights are exported.

  mixed_precision: Keras wraps the optimizer in a LossScaleOptimizer (dynamic loss scaling) so
  float16 gradients do not underflow; ignored on a CPU.
  """

  batch_size: int = setting(16, 'global batch size (split across replicas)')
  epochs: int = setting(4, 'the train steps are spread over this many epochs')
  seed: int = setting(0, 'seeds weights, shuffling and augmentation so reruns are comparable')
  mixed_precision: bool = setting(False, 'mixed_float16 with loss scaling when a GPU is visible')
  jit_compile: bool = setting(False, 'XLA-compile the training step')
  cache_mib: int = setting(
    1024, 'keep each split in memory after its first pass when it fits in this many MiB; 0 never'
  )
  distribution: str = setting(
    'mirrored',
    'tf.distribute strategy: all local GPUs, or several workers from TF_CONFIG',
    DISTRIBUTIONS,
  )
  keep_last_weights: bool = setting(
    False, "export the last epoch's weights instead of the best epoch's by validation mean IoU"
  )

  def __post_init__(self):
    check_choices(self)
    _at_least_one(self, 'batch_size', 'epochs')
    if self.cache_mib < 0:
      raise ValueError(f'cache_mib must be >= 0, got {self.cache_mib}')


# (group name, settings class): the groups of TrainerConfig, in the order flags and cards show them.
GROUPS = (
  ('data', TransformConfig),
  ('model', ModelConfig),
  ('augmentation', AugmentationConfig),
  ('losses', LossConfig),
  ('optimizer', OptimizerConfig),
  ('runtime', RuntimeConfig),
)
_GROUP_CLASSES = dict(GROUPS)
# Flat setting name -> its group.
GROUP_OF = {
  field.name: group for group, settings in GROUPS for field in dataclasses.fields(settings)
}
if len(GROUP_OF) != sum(len(dataclasses.fields(settings)) for _, settings in GROUPS):
  raise AssertionError('a setting name occurs in two groups: flat names must be unique')


def _by_group(flat_values: dict) -> dict:
  """{flat name: value} -> {group: {name: value}}; ValueError naming unknown names."""
  unknown = sorted(set(flat_values) - set(GROUP_OF))
  if unknown:
    raise ValueError(f'unknown trainer settings {unknown}; known: {sorted(GROUP_OF)}')
  grouped = {}
  for name, value in flat_values.items():
    grouped.setdefault(GROUP_OF[name], {})[name] = value
  return grouped


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
  """Everything the Trainer (and the Tuner) read: the data settings the Transform ran with, then the
  model, its augmentation, loss, optimizer and runtime."""

  data: TransformConfig = dataclasses.field(default_factory=TransformConfig)
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  augmentation: AugmentationConfig = dataclasses.field(default_factory=AugmentationConfig)
  losses: LossConfig = dataclasses.field(default_factory=LossConfig)
  optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
  runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)

  def __post_init__(self):
    for group, settings in GROUPS:
      if not isinstance(getattr(self, group), settings):
        raise TypeError(
          f'TrainerConfig.{group} must be a {settings.__name__}, got '
          f'{type(getattr(self, group)).__name__}'
        )
    size, depth, encoder = self.data.image_size, self.model.depth, self.model.encoder
    multiple = 2**depth if encoder == 'fcn' else APPLICATION_STRIDE
    if size % multiple:  # the encoder halves the size `depth` times (an application's: 5 times)
      lower = size - size % multiple
      sizes = f'{lower} or {lower + multiple}' if lower else str(multiple)
      why, other = (
        (f'2 to the power of depth, {depth}', 'a smaller depth')
        if encoder == 'fcn'
        else (f'the stride of encoder {encoder}', 'encoder fcn')
      )
      raise ValueError(
        f'image_size {size} must be a multiple of {multiple} ({why}): use {sizes}, or {other}'
      )
    if encoder == 'fcn' and self.optimizer.encoder_lr_multiplier != 1:
      raise ValueError('encoder_lr_multiplier needs an application encoder, not fcn: add --encoder')
    self.flip_swap_pairs  # noqa: B018  (checks flip_swap, and that it agrees with the names)
    if self.augmentation.crop_cat_max_ratio < 1 and self.data.resize != 'none':
      raise ValueError(
        f'crop_cat_max_ratio needs resize none (resize {self.data.resize} trains on whole images, '
        'not crops)'
      )
    if self.model.inference == 'slide' and self.data.resize != 'none':
      raise ValueError(
        f'inference slide needs resize none (resize {self.data.resize} brings every image to the '
        'model size: there is nothing to slide over)'
      )

  @property
  def flip_swap_pairs(self) -> tuple:
    """The pairs of class ids a mirror swaps: `augmentation.flip_swap` (`parse_flip_swap`) plus the
    pairs the class names name (`lateral.named_pairs`); none with 'none'. ValueError when the two
    pair a class differently."""
    names = self.data.names
    given = parse_flip_swap(self.augmentation.flip_swap, names)
    if self.augmentation.flip_swap.strip().lower() == lateral.NO_SWAP:
      return ()
    return lateral.merge_pairs(given, lateral.named_pairs(names), names)

  @classmethod
  def from_flat(cls, **values) -> 'TrainerConfig':
    """A config from flat setting names (`image_size=32, learning_rate=1e-3, ...`), each routed to
    its group; the rest default. ValueError naming any unknown name."""
    return cls(
      **{group: _GROUP_CLASSES[group](**fields) for group, fields in _by_group(values).items()}
    )

  def replace(self, **flat_values) -> 'TrainerConfig':
    """A copy with the settings named by their flat names replaced (checked again)."""
    return dataclasses.replace(
      self,
      **{
        group: dataclasses.replace(getattr(self, group), **fields)
        for group, fields in _by_group(flat_values).items()
      },
    )

  def flat(self) -> dict:
    """Every setting by its flat name."""
    return {
      name: value
      for group, _ in GROUPS
      for name, value in dataclasses.asdict(getattr(self, group)).items()
    }

  def to_dict(self) -> dict:
    """{group: {name: value}}: plain JSON-able values (the Trainer's and Tuner's custom_config)."""
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values: dict) -> 'TrainerConfig':
    """The config of a `to_dict` dict (missing groups and settings default). ValueError naming
    unknown groups, or settings unknown to their group."""
    unknown = sorted(set(values) - set(_GROUP_CLASSES))
    if unknown:
      raise ValueError(f'unknown trainer setting groups {unknown}; known: {list(_GROUP_CLASSES)}')
    groups = {}
    for group, fields in values.items():
      settings = _GROUP_CLASSES[group]
      if not isinstance(fields, dict):
        raise ValueError(
          f'trainer setting group {group!r} must be a dict of settings, got {fields!r}'
        )
      known = {f.name for f in dataclasses.fields(settings)}
      stray = sorted(set(fields) - known)
      if stray:
        raise ValueError(f'unknown {group} settings {stray}; known: {sorted(known)}')
      groups[group] = settings(**fields)
    return cls(**groups)
