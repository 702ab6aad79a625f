"""Trainer settings, passed from the pipeline through the Trainer's `custom_config` dict.

Fields are `transform.config.setting`s: each carries its flag's help and choices (see there).
"""
import dataclasses

from transform.config import TransformConfig, check_choices, setting

HEAD_INITS = ('zeros', 'prior')
DISTRIBUTIONS = ('mirrored', 'multi_worker')


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
  loss: str = setting('soft_iou', 'training loss: a name of trainer.losses.LOSSES (see '
                       'docs/loss_study.md)', _loss_names)
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
  seed: int = setting(0, 'seeds weights and shuffling so reruns are comparable')

  def __post_init__(self):
    check_choices(self)

  @classmethod
  def from_dict(cls, values: dict) -> 'TrainerConfig':
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
      raise ValueError(f'unknown trainer settings {sorted(unknown)}; known: {sorted(known)}')
    return cls(**values)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)
