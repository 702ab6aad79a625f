"""The pipeline definition: which components run and how they are wired. Every runner uses it.

ImportExampleGen -> RecordValidator (bad records -> quarantine) -> StatisticsGen -> SchemaGen
  -> ExampleValidator -> AnomalyGate; -> Transform -> Trainer -> Evaluator (+ baseline: the
  Resolver's latest blessed model, or ServedModelBaseline's served model) -> Pusher
  -> ModelCardGenerator
Optional: Tuner before the Trainer (tune_trials); InferenceExampleGen -> BulkInferrer (blessed
  model) -> MaskWriter (infer_data_root).

`create_pipeline` takes the settings of `pipeline.settings`, one object per concern, and builds the
pipeline from one function per stage: data validation, baseline, training, evaluate-and-push and
batch inference.
"""

import dataclasses
import json
from typing import NamedTuple

from tfx import v1 as tfx
from tfx.utils import proto_utils

from components.anomaly_gate import AnomalyGate
from components.dedup_pusher import DedupPusher
from components.encoder_trainer import EncoderWeightsTrainer
from components.mask_writer import MaskWriter
from components.model_card import ModelCardGenerator
from components.record_validation import RecordValidator, TolerantImportExampleGen
from components.served_baseline import ServedBaselineEvaluator, ServedModelBaseline
from pipeline import eval_config as eval_config_lib
from pipeline.settings import (
  Baseline,
  BlessingSettings,
  DataSettings,
  OptionalComponents,
  PipelinePaths,
  TrainingSettings,
  holds_resolver,
)
from trainer import export, tuning

PREPROCESSING_FN = 'transform.preprocessing.preprocessing_fn'
RUN_FN = 'trainer.task.run_fn'
TUNER_FN = 'trainer.tuning.tuner_fn'
# Batch inference (infer_data_root): its own ExampleGen id, one split of every file under the
# folder.
INFERENCE_EXAMPLE_GEN_ID = 'InferenceExampleGen'
INFERENCE_SPLIT = 'unlabelled'
RESOLVER_ID = 'latest_blessed_model_resolver'
SERVED_BASELINE_ID = 'ServedModelBaseline'
MODEL_CARD_ID = 'ModelCardGenerator'


def example_gen_configs(split_patterns) -> dict:
  """ImportExampleGen arguments: named splits from file patterns under the data root, or a
  deterministic 3:1 hash split of everything when the data has no splits."""
  if split_patterns:
    return {
      'input_config': tfx.proto.Input(
        splits=[
          tfx.proto.Input.Split(name=name, pattern=pattern)
          for name, pattern in split_patterns.items()
        ]
      )
    }
  return {
    'output_config': tfx.proto.Output(
      split_config=tfx.proto.SplitConfig(
        splits=[
          tfx.proto.SplitConfig.Split(name='train', hash_buckets=3),
          tfx.proto.SplitConfig.Split(name='eval', hash_buckets=1),
        ]
      )
    )
  }


def _runtime_settable(name: str, value, runtime_parameters: bool):
  """`value`, or a str RuntimeParameter `name` that defaults to it. TFX sets an exec property at
  run time only as a whole, so a proto (TrainArgs, EvalConfig) becomes a parameter holding its
  JSON."""
  if not runtime_parameters:
    return value
  default = value if isinstance(value, str) else proto_utils.proto_to_json(value)
  return tfx.dsl.experimental.RuntimeParameter(name=name, ptype=str, default=default)


class _Validation(NamedTuple):
  """The data-validation stage. Its `examples` (the valid records) feed every later stage."""

  example_gen: TolerantImportExampleGen
  record_validator: RecordValidator
  statistics_gen: tfx.components.StatisticsGen
  schema_gen: tfx.components.SchemaGen
  example_validator: tfx.components.ExampleValidator
  anomaly_gate: AnomalyGate

  @property
  def examples(self):
    return self.record_validator.outputs['valid_examples']

  @property
  def schema(self):
    return self.schema_gen.outputs['schema']


def _data_validation(
  data_root: str, data: DataSettings, training: TrainingSettings, runtime_parameters: bool
) -> _Validation:
  """ImportExampleGen -> RecordValidator -> StatisticsGen -> SchemaGen -> ExampleValidator ->
  AnomalyGate: bad records quarantined, and a run whose data is unlike the schema stopped."""
  transform_config = training.trainer_config.data
  # Reads damaged TFRecord files record by record instead of failing on them, so that the
  # RecordValidator can quarantine what is unreadable along with what is invalid.
  example_gen = TolerantImportExampleGen(
    input_base=_runtime_settable('data_root', data_root, runtime_parameters),
    **example_gen_configs(data.split_patterns),
  ).with_id('ImportExampleGen')
  record_validator = RecordValidator(
    examples=example_gen.outputs['examples'],
    num_classes=transform_config.num_classes,
    ignore_label=transform_config.ignore_label,
    max_bad_fraction=data.max_bad_fraction,
  )
  statistics_gen = tfx.components.StatisticsGen(examples=record_validator.outputs['valid_examples'])
  # The schema is inferred from the train split alone, so that eval data unlike it (a feature
  # missing, another type, a new image format) is an anomaly that stops the run before Transform.
  schema_gen = tfx.components.SchemaGen(
    statistics=statistics_gen.outputs['statistics'],
    infer_feature_shape=True,
    exclude_splits=['eval'],
  )
  example_validator = tfx.components.ExampleValidator(
    statistics=statistics_gen.outputs['statistics'], schema=schema_gen.outputs['schema']
  )
  anomaly_gate = AnomalyGate(anomalies=example_validator.outputs['anomalies'])
  return _Validation(
    example_gen, record_validator, statistics_gen, schema_gen, example_validator, anomaly_gate
  )


class _Baselines(NamedTuple):
  """The baseline stage: the Resolver, the served-model importer, either or neither."""

  resolver: tfx.dsl.Resolver | None
  served: ServedModelBaseline | None
  baseline: Baseline

  def evaluator_baseline(self):
    """The Evaluator's `baseline_model` channel; None with `Baseline.NONE`."""
    if self.baseline == Baseline.SERVING_DIR:
      return self.served.outputs['model']
    if self.baseline == Baseline.RESOLVER:
      return self.resolver.outputs['model']
    return None


def _baselines(
  serving_model_dir: str, blessing: BlessingSettings, training: TrainingSettings
) -> _Baselines:
  """The Resolver of the latest blessed model (the resolver baseline, or what a warm start starts
  from), and with `Baseline.SERVING_DIR` the model TF Serving serves
  (components/served_baseline.py)."""
  resolver = (
    tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id(RESOLVER_ID)
    if holds_resolver(blessing.baseline, training.warm_start)
    else None
  )
  served = (
    ServedModelBaseline(serving_model_dir=serving_model_dir).with_id(SERVED_BASELINE_ID)
    if blessing.baseline == Baseline.SERVING_DIR
    else None
  )
  return _Baselines(resolver, served, blessing.baseline)


class _Training(NamedTuple):
  transform: tfx.components.Transform
  tuner: tfx.components.Tuner | None
  trainer: tfx.components.Trainer


def _training(
  validation: _Validation,
  training: TrainingSettings,
  extras: OptionalComponents,
  resolver: tfx.dsl.Resolver | None,
  runtime_parameters: bool,
) -> _Training:
  """Transform (after the AnomalyGate), the optional Tuner, and the Trainer (from the resolver's
  model with a warm start)."""
  trainer_config = training.trainer_config
  transform = tfx.components.Transform(
    examples=validation.examples,
    schema=validation.schema,
    preprocessing_fn=PREPROCESSING_FN,
    custom_config=dataclasses.asdict(trainer_config.data),
    # Only the analyzers run and the graph is exported: the Trainer maps the raw examples through
    # it (trainer.data), so no float32 one-hot copy of the data set is written (see
    # docs/performance.md).
    materialize=False,
    disable_statistics=True,
  )
  # No data passes, only the order: anomalies stop the run.
  transform.add_upstream_node(validation.anomaly_gate)

  tuner = (
    tfx.components.Tuner(
      tuner_fn=TUNER_FN,
      examples=validation.examples,
      transform_graph=transform.outputs['transform_graph'],
      schema=validation.schema,
      train_args=tfx.proto.TrainArgs(num_steps=extras.tune_steps or training.train_args.num_steps),
      eval_args=training.eval_args,
      custom_config={
        tuning.TRAINER_CONFIG_KEY: trainer_config.to_dict(),
        tuning.MAX_TRIALS_KEY: extras.tune_trials,
        # A warm start needs the base model's architecture: its width is not searched.
        tuning.SEARCH_WIDTH_KEY: not training.warm_start,
      },
    )
    if extras.tune_trials > 0
    else None
  )

  # TFX's Trainer, recording the encoder's weights file on its model artifact.
  trainer = EncoderWeightsTrainer(
    run_fn=RUN_FN,
    hyperparameters=tuner.outputs['best_hyperparameters'] if tuner else None,
    examples=validation.examples,
    transform_graph=transform.outputs['transform_graph'],
    schema=validation.schema,
    train_args=_runtime_settable('train_args', training.train_args, runtime_parameters),
    eval_args=training.eval_args,
    base_model=resolver.outputs['model'] if training.warm_start else None,
    custom_config=trainer_config.to_dict(),
  ).with_id('Trainer')
  return _Training(transform, tuner, trainer)


class _Release(NamedTuple):
  evaluator: tfx.components.Evaluator
  pusher: DedupPusher
  model_card: ModelCardGenerator


def _evaluate_and_push(
  validation: _Validation,
  trained: _Training,
  baselines: _Baselines,
  paths: PipelinePaths,
  data: DataSettings,
  training: TrainingSettings,
  blessing: BlessingSettings,
  runtime_parameters: bool,
) -> _Release:
  """The Evaluator (against the baseline), the Pusher of a blessed model, and its model card."""
  trainer = trained.trainer
  num_classes = training.trainer_config.data.num_classes
  # Without a Resolver the served model is the baseline, through an Evaluator that takes its
  # empty artifact (nothing served yet) as no baseline.
  evaluator_class = ServedBaselineEvaluator if baselines.served else tfx.components.Evaluator
  evaluator = evaluator_class(
    examples=validation.examples,
    model=trainer.outputs['model'],
    baseline_model=baselines.evaluator_baseline(),
    eval_config=_runtime_settable(
      'eval_config',
      eval_config_lib.make_eval_config(
        num_classes,
        blessing.min_mean_iou,
        list(training.trainer_config.data.names),
        blessing.eval_options,
      ),
      runtime_parameters,
    ),
  ).with_id('Evaluator')

  pusher = DedupPusher(
    model=trainer.outputs['model'],
    model_blessing=evaluator.outputs['blessing'],
    examples=validation.examples,  # TF Serving warm-up requests from a few eval records
    push_destination=tfx.proto.PushDestination(
      filesystem=tfx.proto.PushDestination.Filesystem(base_directory=paths.serving_model_dir)
    ),
  ).with_id('Pusher')
  # The pushed model's card beside it (nothing when nothing was pushed).
  model_card = ModelCardGenerator(
    model=trainer.outputs['model'],
    model_blessing=evaluator.outputs['blessing'],
    evaluation=evaluator.outputs['evaluation'],
    pushed_model=pusher.outputs['pushed_model'],
    examples=validation.examples,
    statistics=validation.statistics_gen.outputs['statistics'],
    quarantine=validation.record_validator.outputs['quarantine'],
    transform_graph=trained.transform.outputs['transform_graph'],
    base_model=trainer.inputs.get('base_model'),  # what the Trainer started from, if anything
    trainer_config=json.dumps(training.trainer_config.to_dict(), sort_keys=True),
    train_args=trainer.exec_properties['train_args'],
  ).with_id(MODEL_CARD_ID)
  return _Release(evaluator, pusher, model_card)


def batch_inference(
  infer_data_root: str, trainer, evaluator, num_classes: int, runtime_parameters: bool = False
) -> tuple:
  """(InferenceExampleGen, BulkInferrer, MaskWriter): masks for the unlabelled records under
  `infer_data_root`, from the Trainer's model once the Evaluator has blessed it.

  The records skip the RecordValidator (its checks need masks) and the schema components: TFX's
  ImportExampleGen fails on a damaged TFRecord file, the `masks` signature on a record without a
  decodable `image/encoded`, and MaskWriter checks every mask it writes (docs/batch_inference.md).
  With `runtime_parameters`, `infer_data_root` is the string parameter `infer_data_root`."""
  example_gen = tfx.components.ImportExampleGen(
    input_base=_runtime_settable('infer_data_root', infer_data_root, runtime_parameters),
    input_config=tfx.proto.Input(splits=[tfx.proto.Input.Split(name=INFERENCE_SPLIT, pattern='*')]),
    # One output split of every record: without it ImportExampleGen hash-splits one input 2:1.
    output_config=tfx.proto.Output(
      split_config=tfx.proto.SplitConfig(
        splits=[tfx.proto.SplitConfig.Split(name=INFERENCE_SPLIT, hash_buckets=1)]
      )
    ),
  ).with_id(INFERENCE_EXAMPLE_GEN_ID)
  bulk_inferrer = tfx.components.BulkInferrer(
    examples=example_gen.outputs['examples'],
    model=trainer.outputs['model'],
    model_blessing=evaluator.outputs['blessing'],  # not blessed: BulkInferrer writes nothing
    data_spec=tfx.proto.DataSpec(example_splits=[INFERENCE_SPLIT]),
    model_spec=tfx.proto.ModelSpec(model_signature_name=[export.MASKS_SIGNATURE]),
  )
  mask_writer = MaskWriter(
    inference_result=bulk_inferrer.outputs['inference_result'],
    model_blessing=evaluator.outputs['blessing'],
    num_classes=num_classes,
  )
  return example_gen, bulk_inferrer, mask_writer


def create_pipeline(
  paths: PipelinePaths,
  data: DataSettings,
  training: TrainingSettings,
  blessing: BlessingSettings,
  extras: OptionalComponents | None = None,
  *,
  metadata_connection_config=None,
  beam_pipeline_args: list[str] | None = None,
  enable_cache: bool = True,
  runtime_parameters: bool = False,
) -> tfx.dsl.Pipeline:
  """Builds the segmentation pipeline.

  Args:
    paths: the pipeline's name, root, data root and serving directory.
    data: splits, class names and the share of bad records a run tolerates.
    training: the settings tree, TFX's TrainArgs and EvalArgs, and whether to warm-start.
    blessing: the Evaluator's rules and its baseline. The pipeline holds the latest-blessed-model
      Resolver iff the baseline is `Baseline.RESOLVER` or `training.warm_start` is on.
    extras: the Tuner and batch inference; None: neither.
    metadata_connection_config: ML Metadata connection; None lets the orchestrator choose.
    beam_pipeline_args: arguments for every Beam-based component (runner, workers...).
    enable_cache: reuse outputs of components whose inputs and settings did not change.
    runtime_parameters: make the data root, the TrainArgs, the EvalConfig and (with batch
      inference) the inference data root the string runtime parameters `data_root`, `train_args`,
      `eval_config` and `infer_data_root` (the protos as JSON), defaulting to the values of the
      settings, so a Kubeflow user can set them at submission.
  """
  extras = extras or OptionalComponents()
  validation = _data_validation(paths.data_root, data, training, runtime_parameters)
  baselines = _baselines(paths.serving_model_dir, blessing, training)
  trained = _training(validation, training, extras, baselines.resolver, runtime_parameters)
  release = _evaluate_and_push(
    validation, trained, baselines, paths, data, training, blessing, runtime_parameters
  )
  inference = (
    batch_inference(
      extras.infer_data_root,
      trained.trainer,
      release.evaluator,
      training.trainer_config.data.num_classes,
      runtime_parameters,
    )
    if extras.infer_data_root
    else ()
  )
  components = [
    *validation,
    trained.transform,
    trained.tuner,
    trained.trainer,
    baselines.resolver,
    baselines.served,
    *release,
    *inference,
  ]
  return tfx.dsl.Pipeline(
    pipeline_name=paths.pipeline_name,
    pipeline_root=paths.pipeline_root,
    components=[c for c in components if c is not None],
    enable_cache=enable_cache,
    metadata_connection_config=metadata_connection_config,
    beam_pipeline_args=beam_pipeline_args,
  )
