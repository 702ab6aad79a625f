"""Trainer settings, passed from the pipeline through the Trainer's `custom_config` dict."""
import dataclasses

# Values of the `loss` setting; `trainer.losses.get_loss` maps each to its function.
LOSS_NAMES = ('soft_iou', 'soft_iou_per_class', 'lovasz', 'cross_entropy', 'cross_entropy+soft_iou')


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
  """What the model and its training loop need beyond the data.

  Attributes:
    num_classes: output channels of the sigmoid head (background is class 0).
    image_size: model input height and width; Transform resizes to it.
    channels: image channels after Transform (1 or 3).
    loss: one of `trainer.losses.LOSS_NAMES`.
    cross_entropy_weight: weight of the cross-entropy term of 'cross_entropy+soft_iou'.
    learning_rate: Adam's step size.
    batch_size: global batch size (split across replicas).
    base_filters: width of the first encoder stage; each deeper stage doubles it.
    depth: number of down-sampling stages of the encoder.
    epochs: train_steps are spread over this many epochs (one TensorBoard point each).
    mixed_precision: use `mixed_float16` when a GPU is present (ignored on CPU); Keras then wraps
      the optimizer in a LossScaleOptimizer (dynamic loss scaling) so float16 gradients do not
      underflow.
    cache_mib: hold the decoded train and eval splits in memory after their first pass when each
      fits in this many MiB (0: never); larger splits are read from the TFRecords every epoch.
    jit_compile: XLA-compile the training step (fuses the convolutions' element-wise tails; works
      on CPU and GPU).
    distribution: 'mirrored' (all local GPUs) or 'multi_worker' (TF_CONFIG from the environment).
    head_init: 'zeros' starts every sigmoid at 0.5; 'prior' starts each class at its pixel
      frequency. 'zeros' is the default because the soft IoU's gradient reaches a logit through
      sigmoid'(z) = p(1 - p): a rare class started at its prior (p ~ 0.001) barely moves and is never
      learnt (measured: triangle IoU 0 with 'prior', 0.84 with 'zeros'; see the README's loss notes).
    seed: seeds weights and shuffling so reruns are comparable.
  """
  num_classes: int = 4
  image_size: int = 64
  channels: int = 3
  loss: str = 'soft_iou'
  cross_entropy_weight: float = 1.0
  learning_rate: float = 3e-3
  batch_size: int = 16
  base_filters: int = 16
  depth: int = 3
  epochs: int = 4
  mixed_precision: bool = False
  jit_compile: bool = False
  cache_mib: int = 1024
  distribution: str = 'mirrored'
  head_init: str = 'zeros'
  seed: int = 0

  def __post_init__(self):
    if self.loss not in LOSS_NAMES:
      raise ValueError(f'unknown loss {self.loss!r}; choose one of {", ".join(LOSS_NAMES)}')
    if self.head_init not in ('zeros', 'prior'):
      raise ValueError(f"head_init must be 'zeros' or 'prior', not {self.head_init!r}")

  @classmethod
  def from_dict(cls, values: dict) -> 'TrainerConfig':
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
      raise ValueError(f'unknown trainer settings {sorted(unknown)}; known: {sorted(known)}')
    return cls(**values)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)
