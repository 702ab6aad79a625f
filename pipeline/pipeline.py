"""The pipeline definition: which components run and how they are wired. Every runner uses it.

ImportExampleGen -> RecordValidator (bad records -> quarantine) -> StatisticsGen -> SchemaGen
  -> ExampleValidator -> AnomalyGate; -> Transform -> Trainer -> Evaluator (+ baseline: the Resolver's
  latest blessed model, or ServedModelBaseline's served model) -> Pusher -> ModelCardGenerator
Optional: Tuner before the Trainer (tune_trials); InferenceExampleGen -> BulkInferrer (blessed model)
  -> MaskWriter (infer_data_root).
"""
import dataclasses
import json
from typing import Dict, List, Optional

from tfx import v1 as tfx
from tfx.utils import proto_utils

from components.dedup_pusher import DedupPusher
from components.model_card import ModelCardGenerator
from components.served_baseline import ServedBaselineEvaluator, ServedModelBaseline
from components.anomaly_gate import AnomalyGate
from components.record_validation import RecordValidator, TolerantImportExampleGen
from components.mask_writer import MaskWriter
from pipeline import eval_config as eval_config_lib
from transform.config import TransformConfig
from trainer import export, tuning
from trainer.config import TrainerConfig

PREPROCESSING_FN = 'transform.preprocessing.preprocessing_fn'
RUN_FN = 'trainer.task.run_fn'
TUNER_FN = 'trainer.tuning.tuner_fn'
# Batch inference (infer_data_root): its own ExampleGen id, one split of every file under the folder.
INFERENCE_EXAMPLE_GEN_ID = 'InferenceExampleGen'
INFERENCE_SPLIT = 'unlabelled'
RESOLVER_ID = 'latest_blessed_model_resolver'
SERVED_BASELINE_ID = 'ServedModelBaseline'
MODEL_CARD_ID = 'ModelCardGenerator'
# The Evaluator's baseline (`create_pipeline(baseline=...)`).
BASELINE_RESOLVER, BASELINE_SERVING_DIR, BASELINE_NONE = 'resolver', 'serving_dir', 'none'
BASELINES = (BASELINE_RESOLVER, BASELINE_SERVING_DIR, BASELINE_NONE)
# The data layout every runner expects unless told to hash-split: DATA_ROOT/train/*, DATA_ROOT/eval/*.
SPLIT_PATTERNS = {'train': 'train/*', 'eval': 'eval/*'}


def example_gen_configs(split_patterns: Optional[Dict[str, str]]) -> dict:
  """ImportExampleGen arguments: named splits from file patterns under the data root, or a
  deterministic 3:1 hash split of everything when the data has no splits."""
  if split_patterns:
    return {'input_config': tfx.proto.Input(splits=[
        tfx.proto.Input.Split(name=name, pattern=pattern) for name, pattern in split_patterns.items()])}
  return {'output_config': tfx.proto.Output(split_config=tfx.proto.SplitConfig(splits=[
      tfx.proto.SplitConfig.Split(name='train', hash_buckets=3),
      tfx.proto.SplitConfig.Split(name='eval', hash_buckets=1)]))}


def _runtime_settable(name: str, value, runtime_parameters: bool):
  """`value`, or a str RuntimeParameter `name` that defaults to it. TFX sets an exec property at
  run time only as a whole, so a proto (TrainArgs, EvalConfig) becomes a parameter holding its JSON."""
  if not runtime_parameters:
    return value
  default = value if isinstance(value, str) else proto_utils.proto_to_json(value)
  return tfx.dsl.experimental.RuntimeParameter(name=name, ptype=str, default=default)


def batch_inference(infer_data_root: str, trainer, evaluator, num_classes: int,
                    runtime_parameters: bool = False) -> tuple:
  """(InferenceExampleGen, BulkInferrer, MaskWriter): masks for the unlabelled records under
  `infer_data_root`, from the Trainer's model once the Evaluator has blessed it.

  The records skip the RecordValidator (its checks need masks) and the schema components: TFX's
  ImportExampleGen fails on a damaged TFRecord file, the `masks` signature on a record without a
  decodable `image/encoded`, and MaskWriter checks every mask it writes (docs/batch_inference.md)."""
  example_gen = tfx.components.ImportExampleGen(
      input_base=_runtime_settable('infer_data_root', infer_data_root, runtime_parameters),
      input_config=tfx.proto.Input(splits=[
          tfx.proto.Input.Split(name=INFERENCE_SPLIT, pattern='*')]),
      # One output split of every record: without it ImportExampleGen hash-splits one input 2:1.
      output_config=tfx.proto.Output(split_config=tfx.proto.SplitConfig(splits=[
          tfx.proto.SplitConfig.Split(name=INFERENCE_SPLIT, hash_buckets=1)])),
  ).with_id(INFERENCE_EXAMPLE_GEN_ID)
  bulk_inferrer = tfx.components.BulkInferrer(
      examples=example_gen.outputs['examples'],
      model=trainer.outputs['model'],
      model_blessing=evaluator.outputs['blessing'],  # not blessed: BulkInferrer writes nothing
      data_spec=tfx.proto.DataSpec(example_splits=[INFERENCE_SPLIT]),
      model_spec=tfx.proto.ModelSpec(model_signature_name=[export.MASKS_SIGNATURE]))
  mask_writer = MaskWriter(inference_result=bulk_inferrer.outputs['inference_result'],
                           model_blessing=evaluator.outputs['blessing'], num_classes=num_classes)
  return example_gen, bulk_inferrer, mask_writer


def create_pipeline(pipeline_name: str,
                    pipeline_root: str,
                    data_root: str,
                    serving_model_dir: str,
                    transform_config: TransformConfig,
                    trainer_config: TrainerConfig,
                    train_steps: int,
                    eval_steps: int,
                    min_mean_iou: float,
                    split_patterns: Optional[Dict[str, str]] = None,
                    class_names: Optional[List[str]] = None,
                    metadata_connection_config=None,
                    beam_pipeline_args: Optional[List[str]] = None,
                    enable_cache: bool = True,
                    max_bad_fraction: float = 0.0,
                    runtime_parameters: bool = False,
                    baseline_resolver: bool = True,
                    baseline: Optional[str] = None,
                    eval_options: Optional[eval_config_lib.EvalOptions] = None,
                    warm_start: bool = False,
                    infer_data_root: Optional[str] = None,
                    tune_trials: int = 0,
                    tune_steps: Optional[int] = None) -> tfx.dsl.Pipeline:
  """Builds the segmentation pipeline.

  Args:
    pipeline_name: name of the pipeline in ML Metadata (runs of one name share history and cache).
    pipeline_root: where component outputs are written.
    data_root: folder of TFRecord files of `tf.train.Example` in the project's format.
    serving_model_dir: the Pusher writes blessed models here, one numbered version per push.
    transform_config: image size, channels, classes and ignore label for Transform.
    trainer_config: model and optimisation settings; its image size, channels and classes must
      match `transform_config`.
    train_steps: optimisation steps of the Trainer.
    eval_steps: validation steps the Trainer runs at the end of each epoch.
    min_mean_iou: blessing lower bound on the eval split's mean IoU.
    split_patterns: split name -> file pattern relative to `data_root`, e.g.
      `SPLIT_PATTERNS`; None for a 3:1 hash split.
    class_names: names for per-class metrics; default class_0, class_1, ...
    metadata_connection_config: ML Metadata connection; None lets the orchestrator choose.
    beam_pipeline_args: arguments for every Beam-based component (runner, workers...).
    enable_cache: reuse outputs of components whose inputs and settings did not change.
    max_bad_fraction: the run fails when a larger share of any split's records is bad (undecodable,
      sizes differ, unknown class ids); bad records are quarantined either way.
    runtime_parameters: make `data_root`, the TrainArgs and the EvalConfig the string runtime
      parameters `data_root`, `train_args` and `eval_config` (the protos as JSON), defaulting to the
      values built from the arguments above, so a Kubeflow user can set them at submission.
    baseline_resolver: whether the pipeline may hold the latest-blessed-model Resolver (an ML
      Metadata query). False for orchestrators that cannot run one, e.g. open-source Kubeflow
      Pipelines; it then also chooses `baseline='serving_dir'` unless `baseline` says otherwise.
    baseline: what the Evaluator compares the candidate with (the "not worse than the baseline"
      and per-class drop rules): 'resolver', the latest blessed model in ML Metadata (needs
      `baseline_resolver`); 'serving_dir', the newest version in `serving_model_dir`, i.e. the model
      TF Serving serves, imported by `components.served_baseline.ServedModelBaseline` (no Resolver,
      so it runs on every orchestrator); 'none', no baseline (only the absolute rules bless). None
      (default): 'resolver' when `baseline_resolver`, else 'serving_dir'.
    eval_options: the Evaluator's optional rules and slices beyond `min_mean_iou` (per-class IoU
      floors, a per-class regression limit, feature and class-presence slices); see
      `pipeline.eval_config`.
    warm_start: the Trainer starts from the weights of the latest blessed model (the baseline
      resolver's model, fed to its `base_model` input) when there is one, and from scratch before the
      first blessing; its architecture must match `trainer_config` (`trainer.continuation`). Needs
      `baseline_resolver`.
    infer_data_root: folder of TFRecord files of unlabelled records (`image/encoded`, optionally
      `image/filename`; no mask needed). When given, `InferenceExampleGen` reads every file directly
      under it, TFX's BulkInferrer runs the trained model's `masks` signature on them when the
      Evaluator blessed it, and `MaskWriter` writes one class-id PNG per record at the image's own
      size plus `index.csv` into its `masks` artifact (docs/batch_inference.md). With
      `runtime_parameters` it is the string parameter `infer_data_root`.
    tune_trials: when > 0, TFX's Tuner runs a KerasTuner search of this many trials
      (`trainer.tuning.tuner_fn`: learning rate, loss, cross-entropy weight, width) before the
      Trainer, which trains with the best trial's values (docs/tuning.md).
    tune_steps: train steps of each trial; None: `train_steps`.
  """
  for field in ('image_size', 'channels', 'num_classes', 'resize'):
    if getattr(transform_config, field) != getattr(trainer_config, field):
      raise ValueError(f'{field} differs between transform_config and trainer_config')
  if warm_start and not baseline_resolver:
    raise ValueError('warm_start needs the baseline resolver: the latest blessed model is the model '
                     'the Trainer starts from')
  baseline = baseline or (BASELINE_RESOLVER if baseline_resolver else BASELINE_SERVING_DIR)
  if baseline not in BASELINES:
    raise ValueError(f'baseline {baseline!r}: one of {BASELINES}')
  if baseline == BASELINE_RESOLVER and not baseline_resolver:
    raise ValueError("baseline='resolver' needs baseline_resolver=True")

  # Reads damaged TFRecord files record by record instead of failing on them, so that the
  # RecordValidator can quarantine what is unreadable along with what is invalid.
  example_gen = TolerantImportExampleGen(
      input_base=_runtime_settable('data_root', data_root, runtime_parameters),
      **example_gen_configs(split_patterns)).with_id('ImportExampleGen')
  record_validator = RecordValidator(
      examples=example_gen.outputs['examples'], num_classes=transform_config.num_classes,
      ignore_label=transform_config.ignore_label, max_bad_fraction=max_bad_fraction)
  examples = record_validator.outputs['valid_examples']
  statistics_gen = tfx.components.StatisticsGen(examples=examples)
  # The schema is inferred from the train split alone, so that eval data unlike it (a feature
  # missing, another type, a new image format) is an anomaly that stops the run before Transform.
  schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs['statistics'],
                                        infer_feature_shape=True, exclude_splits=['eval'])
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs['statistics'], schema=schema_gen.outputs['schema'])
  anomaly_gate = AnomalyGate(anomalies=example_validator.outputs['anomalies'])

  transform = tfx.components.Transform(
      examples=examples,
      schema=schema_gen.outputs['schema'],
      preprocessing_fn=PREPROCESSING_FN,
      custom_config=dataclasses.asdict(transform_config),
      # Only the analyzers run and the graph is exported: the Trainer maps the raw examples through
      # it (trainer.data), so no float32 one-hot copy of the data set is written (see docs/performance.md).
      materialize=False,
      disable_statistics=True)
  transform.add_upstream_node(anomaly_gate)  # no data passes, only the order: anomalies stop the run

  # The latest blessed model: the Evaluator's baseline and, with warm_start, the Trainer's start.
  model_resolver = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
  ).with_id(RESOLVER_ID) if baseline_resolver and (baseline == BASELINE_RESOLVER or warm_start) else None

  tuner = tfx.components.Tuner(
      tuner_fn=TUNER_FN,
      examples=examples,
      transform_graph=transform.outputs['transform_graph'],
      schema=schema_gen.outputs['schema'],
      train_args=tfx.proto.TrainArgs(num_steps=tune_steps or train_steps),
      eval_args=tfx.proto.EvalArgs(num_steps=eval_steps),
      custom_config={tuning.TRAINER_CONFIG_KEY: trainer_config.to_dict(),
                     tuning.MAX_TRIALS_KEY: tune_trials,
                     # A warm start needs the base model's architecture: its width is not searched.
                     tuning.SEARCH_WIDTH_KEY: not warm_start},
  ) if tune_trials > 0 else None

  trainer = tfx.components.Trainer(
      run_fn=RUN_FN,
      hyperparameters=tuner.outputs['best_hyperparameters'] if tuner else None,
      examples=examples,
      transform_graph=transform.outputs['transform_graph'],
      schema=schema_gen.outputs['schema'],
      train_args=_runtime_settable('train_args', tfx.proto.TrainArgs(num_steps=train_steps),
                           runtime_parameters),
      eval_args=tfx.proto.EvalArgs(num_steps=eval_steps),
      base_model=model_resolver.outputs['model'] if warm_start else None,
      custom_config=trainer_config.to_dict())

  # Without a Resolver: the model TF Serving serves is the baseline (components/served_baseline.py).
  served_baseline = (ServedModelBaseline(serving_model_dir=serving_model_dir).with_id(
      SERVED_BASELINE_ID) if baseline == BASELINE_SERVING_DIR else None)
  evaluator = (ServedBaselineEvaluator if served_baseline else tfx.components.Evaluator)(
      examples=examples,
      model=trainer.outputs['model'],
      baseline_model=(served_baseline.outputs['model'] if served_baseline else
                      model_resolver.outputs['model'] if baseline == BASELINE_RESOLVER else None),
      eval_config=_runtime_settable('eval_config', eval_config_lib.make_eval_config(
          transform_config.num_classes, min_mean_iou, class_names, eval_options),
          runtime_parameters)).with_id('Evaluator')

  pusher = DedupPusher(
      model=trainer.outputs['model'],
      model_blessing=evaluator.outputs['blessing'],
      examples=examples,  # TF Serving warm-up requests from a few eval records
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_model_dir)),
  ).with_id('Pusher')
  # The pushed model's card beside it (nothing when nothing was pushed).
  model_card = ModelCardGenerator(
      model=trainer.outputs['model'], model_blessing=evaluator.outputs['blessing'],
      evaluation=evaluator.outputs['evaluation'], pushed_model=pusher.outputs['pushed_model'],
      examples=examples, statistics=statistics_gen.outputs['statistics'],
      quarantine=record_validator.outputs['quarantine'],
      transform_graph=transform.outputs['transform_graph'],
      base_model=trainer.inputs.get('base_model'),  # what the Trainer started from, if anything
      trainer_config=json.dumps(trainer_config.to_dict(), sort_keys=True),
      train_args=trainer.exec_properties['train_args']).with_id(MODEL_CARD_ID)

  inference = (batch_inference(infer_data_root, trainer, evaluator, transform_config.num_classes,
                               runtime_parameters) if infer_data_root else ())

  return tfx.dsl.Pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=pipeline_root,
      components=[c for c in (example_gen, record_validator, statistics_gen, schema_gen,
                              example_validator, anomaly_gate, transform, tuner, trainer,
                              model_resolver, served_baseline, evaluator, pusher, model_card,
                              *inference) if c is not None],
      enable_cache=enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=beam_pipeline_args)
