"""Trainer settings, passed from the pipeline through the Trainer's `custom_config` dict.

Fields are `transform.config.setting`s: each carries its flag's help and choices (see there).
"""
import dataclasses

from transform.config import TransformConfig, check_common, setting

HEAD_INITS = ('zeros', 'prior')
DISTRIBUTIONS = ('mirrored', 'multi_worker')
# Learning-rate schedules over the run's train steps (trainer/schedules.py).
LR_SCHEDULES = ('constant', 'poly', 'cosine')


def parse_flip_swap(text: str, num_classes: int) -> tuple:
  """'3:4,5:6' -> ((3, 4), (5, 6)): pairs of class ids whose channels a mirroring augmentation
  swaps. Ids, or the default names 'class_K'; the Trainer is not given the class names of
  `--class-names`. ValueError on an id out of range, a class in two pairs or a class paired with
  itself."""
  pairs, seen = [], set()
  for item in filter(None, (part.strip() for part in text.split(','))):
    ends = item.split(':')
    if len(ends) != 2:
      raise ValueError(f'flip_swap {item!r}: expected LEFT:RIGHT, e.g. 3:4')
    ids = []
    for end in ends:
      end = end.strip()
      digits = end[len('class_'):] if end.startswith('class_') else end
      if not digits.isdigit():
        raise ValueError(f'flip_swap {item!r}: {end!r} is not a class id (0..{num_classes - 1}); '
                         'the Trainer knows class ids only, in the order of --class-names')
      ids.append(int(digits))
    if any(k >= num_classes for k in ids) or ids[0] == ids[1] or seen & set(ids):
      raise ValueError(f'flip_swap {item!r}: ids must be distinct classes below num_classes '
                       f'{num_classes}, each in one pair')
    seen |= set(ids)
    pairs.append(tuple(ids))
  return tuple(pairs)


def _loss_names():
  from trainer.losses import LOSS_NAMES  # pylint: disable=g-import-not-at-top  (imports TensorFlow)
  return LOSS_NAMES


def _as_in_transform(name: str):
  """The TransformConfig field `name` again (default, help, choices): both stages must agree on it,
  and `create_pipeline` checks that they do."""
  field = {f.name: f for f in dataclasses.fields(TransformConfig)}[name]
  return dataclasses.field(default=field.default, metadata=field.metadata)


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
  """What the model and its training loop need beyond the data.

  Notes beyond each field's help:
    mixed_precision: Keras wraps the optimizer in a LossScaleOptimizer (dynamic loss scaling) so
      float16 gradients do not underflow; ignored on a CPU.
    head_init: 'zeros' is the default because the soft IoU's gradient reaches a logit through
      sigmoid'(z) = p(1 - p): a rare class started at its prior (p ~ 0.001) barely moves and is never
      learnt (measured: triangle IoU 0 with 'prior', 0.84 with 'zeros'; see docs/loss_study.md).
  """
  num_classes: int = _as_in_transform('num_classes')
  image_size: int = _as_in_transform('image_size')
  channels: int = _as_in_transform('channels')
  resize: str = _as_in_transform('resize')
  loss: str = setting('soft_iou_per_class', "training loss (docs/loss_study.md); 'FIRST>SECOND' "
                       'trains with FIRST for --loss-switch of the steps, then SECOND', _loss_names)
  loss_switch: float = setting(0.3, "fraction of the train steps a 'FIRST>SECOND' loss trains "
                               'with FIRST')
  cross_entropy_weight: float = setting(1.0, "weight of the cross-entropy term of "
                                        "'cross_entropy+soft_iou'")
  learning_rate: float = setting(3e-3, "Adam's step size")
  batch_size: int = setting(16, 'global batch size (split across replicas)')
  base_filters: int = setting(16, 'width of the first encoder stage; each deeper stage doubles it')
  depth: int = setting(3, 'down-sampling stages of the encoder')
  epochs: int = setting(4, 'the train steps are spread over this many epochs')
  mixed_precision: bool = setting(False, 'mixed_float16 with loss scaling when a GPU is visible')
  jit_compile: bool = setting(False, 'XLA-compile the training step')
  cache_mib: int = setting(1024, 'keep each split in memory after its first pass when it fits in '
                           'this many MiB; 0 never')
  distribution: str = setting('mirrored', 'tf.distribute strategy: all local GPUs, or several '
                              'workers from TF_CONFIG', DISTRIBUTIONS)
  head_init: str = setting('zeros', "initial sigmoid bias: 0 for every class, or each class's "
                           'pixel frequency', HEAD_INITS)
  seed: int = setting(0, 'seeds weights, shuffling and augmentation so reruns are comparable')
  # Training recipe (docs/training.md#the-training-recipe). Augmentation runs on the train split only.
  no_augment: bool = setting(False, 'no augmentation at all (overrides the settings below)')
  random_scale: bool = setting(False, 'augmentation: scale by a random factor in [--min-scale, '
                               '--max-scale], then crop or pad (padding ignored) back to the model '
                               'size')
  min_scale: float = setting(0.5, 'augmentation: smallest random scale of --random-scale')
  max_scale: float = setting(2.0, 'augmentation: largest random scale of --random-scale')
  no_flip: bool = setting(False, 'augmentation: no random horizontal flip')
  vertical_flip: bool = setting(False, 'augmentation: also flip upside down at random')
  rotate90: bool = setting(False, 'augmentation: also rotate by a random multiple of 90 degrees')
  flip_swap: str = setting('', "lateralised classes as LEFT:RIGHT class ids, e.g. '3:4,5:6': their "
                           'label channels swap when an image is mirrored')
  photometric: bool = setting(False, 'augmentation: random brightness, contrast, gamma (and '
                              'saturation for 3 channels) of the image')
  lr_schedule: str = setting('constant', 'learning rate over the train steps: constant, poly '
                             '(power 0.9, to 0 at the last step) or cosine (to 0)', LR_SCHEDULES)
  warmup_steps: int = setting(0, 'linear learning-rate warm-up from 0 over this many steps, then '
                              'the schedule')
  weight_decay: float = setting(0.0, 'decoupled weight decay (AdamW) when > 0; batch-norm and bias '
                                'variables are not decayed')
  keep_last_weights: bool = setting(False, "export the last epoch's weights instead of the best "
                                    "epoch's by validation mean IoU")

  def __post_init__(self):
    check_common(self)
    for name in ('batch_size', 'base_filters', 'epochs'):
      if getattr(self, name) < 1:
        raise ValueError(f'{name} must be at least 1, got {getattr(self, name)}')
    if self.depth < 0 or self.image_size < 1:
      raise ValueError(f'depth must be >= 0 and image_size >= 1, got {self.depth}, {self.image_size}')
    multiple = 2**self.depth
    if self.image_size % multiple:
      lower = self.image_size - self.image_size % multiple
      sizes = f'{lower} or {lower + multiple}' if lower else str(multiple)
      raise ValueError(f'image_size {self.image_size} must be a multiple of {multiple} (2 to the '
                       f'power of depth, {self.depth}): use {sizes}, or a smaller depth')
    if not self.learning_rate >= 0:  # NaN too; 0 is allowed (a deliberately untrained model)
      raise ValueError(f'learning_rate must be >= 0, got {self.learning_rate}')
    if not 0 <= self.loss_switch <= 1:
      raise ValueError(f'loss_switch must be a fraction of the train steps, from 0 to 1, got '
                       f'{self.loss_switch}')
    if not self.cross_entropy_weight >= 0 or self.cache_mib < 0:
      raise ValueError(f'cross_entropy_weight and cache_mib must be >= 0, got '
                       f'{self.cross_entropy_weight}, {self.cache_mib}')
    parse_flip_swap(self.flip_swap, self.num_classes)
    if not 0 < self.min_scale <= self.max_scale:
      raise ValueError(f'need 0 < min_scale <= max_scale, not {self.min_scale}, {self.max_scale}')
    if self.warmup_steps < 0 or self.weight_decay < 0:
      raise ValueError('warmup_steps and weight_decay must be >= 0')

  @classmethod
  def from_dict(cls, values: dict) -> 'TrainerConfig':
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
      raise ValueError(f'unknown trainer settings {sorted(unknown)}; known: {sorted(known)}')
    return cls(**values)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)
