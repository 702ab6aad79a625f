"""What `pipeline.pipeline.create_pipeline` takes, grouped by concern, and the Evaluator's baseline.

  PipelinePaths       the pipeline's name and where it reads and writes
  DataSettings        how the records are split and screened
  TrainingSettings    the model's settings, TFX's TrainArgs and EvalArgs, warm start
  BlessingSettings    the Evaluator's rules and its baseline (a `Baseline`)
  OptionalComponents  components beyond train-evaluate-push: the Tuner, batch inference

Imports neither TensorFlow nor TFX: the `iouseg` parser reads `Baseline` for its choices as it is
built, and `pipeline.flags.create_pipeline_kwargs` builds these objects from the flags.
"""

import dataclasses
import enum
from collections.abc import Mapping
from typing import TYPE_CHECKING

from trainer.config import TrainerConfig

if TYPE_CHECKING:
  from tfx.proto import trainer_pb2

  from pipeline.eval_config import EvalOptions

# The data layout every runner expects unless told to hash-split: DATA_ROOT/train/* and
# DATA_ROOT/eval/*.
SPLIT_PATTERNS = {'train': 'train/*', 'eval': 'eval/*'}


class Baseline(str, enum.Enum):
  """What the Evaluator compares the candidate with, for its "not worse than the baseline" and
  per-class drop rules.

  RESOLVER: the latest blessed model in ML Metadata, found by TFX's Resolver (an ML Metadata query,
    which open-source Kubeflow Pipelines cannot run; Vertex AI Pipelines and LocalDagRunner can).
  SERVING_DIR: the newest version in the serving directory, the model TF Serving serves, imported by
    `components.served_baseline.ServedModelBaseline`; runs on every orchestrator.
  NONE: no baseline; only the absolute rules bless.
  """

  RESOLVER = 'resolver'
  SERVING_DIR = 'serving_dir'
  NONE = 'none'

  def __str__(self) -> str:
    return self.value  # argparse shows choices and defaults with str()

  @classmethod
  def _missing_(cls, value):
    raise ValueError(f'baseline {value!r}: one of {", ".join(b.value for b in cls)}')


def holds_resolver(baseline: Baseline, warm_start: bool) -> bool:
  """Whether the pipeline holds the latest-blessed-model Resolver: it is the Evaluator's baseline
  with `Baseline.RESOLVER`, and the model the Trainer starts from with a warm start."""
  return baseline == Baseline.RESOLVER or warm_start


@dataclasses.dataclass(frozen=True)
class PipelinePaths:
  """The pipeline's name and where it reads and writes.

  Attributes:
    pipeline_name: name of the pipeline in ML Metadata (runs of one name share history and cache).
    pipeline_root: where component outputs are written.
    data_root: folder of TFRecord files of `tf.train.Example` in the project's format.
    serving_model_dir: the Pusher writes blessed models here, one numbered version per push; with
      `Baseline.SERVING_DIR` the newest of them is the Evaluator's baseline.
  """

  pipeline_name: str
  pipeline_root: str
  data_root: str
  serving_model_dir: str


@dataclasses.dataclass(frozen=True)
class DataSettings:
  """How the records under the data root are split and screened (the class names are a data
  setting of `TrainingSettings.trainer_config`, read by every stage).

  Attributes:
    split_patterns: split name -> file pattern relative to the data root, e.g. `SPLIT_PATTERNS`;
      None for a deterministic 3:1 hash split of every file directly in it.
    max_bad_fraction: the run fails when a larger share of any split's records is bad
      (undecodable, sizes differ, unknown class ids); bad records are quarantined either way.
  """

  split_patterns: Mapping[str, str] | None = None
  max_bad_fraction: float = 0.0


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
  """What Transform and the Trainer are given.

  Attributes:
    trainer_config: the settings tree of data, model, loss, optimiser, augmentation and runtime;
      its `data` part is Transform's `TransformConfig`.
    train_args: TFX's TrainArgs: the Trainer's optimisation steps (`num_steps`).
    eval_args: TFX's EvalArgs: the validation steps the Trainer runs after each epoch.
    warm_start: the Trainer starts from the weights of the latest blessed model (found by the
      Resolver, fed to its `base_model` input) when there is one, and from scratch before the first
      blessing; its architecture must match `trainer_config` (`trainer.continuation`).
  """

  trainer_config: TrainerConfig
  train_args: 'trainer_pb2.TrainArgs'
  eval_args: 'trainer_pb2.EvalArgs'
  warm_start: bool = False


@dataclasses.dataclass(frozen=True)
class BlessingSettings:
  """When the Evaluator blesses the candidate, and what it compares it with.

  Attributes:
    min_mean_iou: blessing lower bound on the eval split's mean IoU.
    eval_options: the Evaluator's optional rules and slices beyond `min_mean_iou` (per-class IoU
      floors, a per-class regression limit, feature and class-presence slices); see
      `pipeline.eval_config`. None: none of them.
    baseline: the model the candidate may not be worse than; a `Baseline` or its value.
  """

  min_mean_iou: float
  eval_options: 'EvalOptions | None' = None
  baseline: Baseline = Baseline.RESOLVER

  def __post_init__(self):
    object.__setattr__(self, 'baseline', Baseline(self.baseline))


@dataclasses.dataclass(frozen=True)
class OptionalComponents:
  """Components beyond train-evaluate-push; each is left out at its default.

  Attributes:
    tune_trials: when > 0, TFX's Tuner runs a KerasTuner search of this many trials
      (`trainer.tuning.tuner_fn`: learning rate, loss, cross-entropy weight, width) before the
      Trainer, which trains with the best trial's values (docs/tuning.md).
    tune_steps: train steps of each trial; None: the Trainer's `train_args.num_steps`.
    infer_data_root: folder of TFRecord files of unlabelled records (`image/encoded`, optionally
      `image/filename`; no mask needed). When given, `InferenceExampleGen` reads every file directly
      under it, TFX's BulkInferrer runs the trained model's `masks` signature on them when the
      Evaluator blessed it, and `MaskWriter` writes one class-id PNG per record at the image's own
      size plus `index.csv` into its `masks` artifact (docs/batch_inference.md).
  """

  tune_trials: int = 0
  tune_steps: int | None = None
  infer_data_root: str | None = None
