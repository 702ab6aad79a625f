"""The pipeline definition: which components run and how they are wired. Every runner uses it.

ImportExampleGen -> RecordValidator (bad records -> quarantine) -> StatisticsGen -> SchemaGen
  -> ExampleValidator -> AnomalyGate; -> Transform -> Trainer -> Evaluator (+ Resolver: latest blessed) -> Pusher
"""
import dataclasses
from typing import Dict, List, Optional

from tfx import v1 as tfx
from tfx.utils import proto_utils

from components.dedup_pusher import DedupPusher
from components.anomaly_gate import AnomalyGate
from components.record_validation import RecordValidator, TolerantImportExampleGen
from pipeline import eval_config as eval_config_lib
from transform.config import TransformConfig
from trainer.config import TrainerConfig

PREPROCESSING_FN = 'transform.preprocessing.preprocessing_fn'
RUN_FN = 'trainer.task.run_fn'
RESOLVER_ID = 'latest_blessed_model_resolver'
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
                    eval_options: Optional[eval_config_lib.EvalOptions] = None) -> tfx.dsl.Pipeline:
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
    baseline_resolver: compare the candidate with the latest blessed model. False leaves the
      Evaluator without a baseline (only `min_mean_iou` blesses), for orchestrators that cannot run
      a Resolver, e.g. open-source Kubeflow Pipelines.
    eval_options: the Evaluator's optional rules and slices beyond `min_mean_iou` (per-class IoU
      floors, a per-class regression limit, feature and class-presence slices); see
      `pipeline.eval_config`.
  """
  for field in ('image_size', 'channels', 'num_classes', 'resize'):
    if getattr(transform_config, field) != getattr(trainer_config, field):
      raise ValueError(f'{field} differs between transform_config and trainer_config')

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

  trainer = tfx.components.Trainer(
      run_fn=RUN_FN,
      examples=examples,
      transform_graph=transform.outputs['transform_graph'],
      schema=schema_gen.outputs['schema'],
      train_args=_runtime_settable('train_args', tfx.proto.TrainArgs(num_steps=train_steps),
                           runtime_parameters),
      eval_args=tfx.proto.EvalArgs(num_steps=eval_steps),
      custom_config=trainer_config.to_dict())

  model_resolver = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
  ).with_id(RESOLVER_ID) if baseline_resolver else None

  evaluator = tfx.components.Evaluator(
      examples=examples,
      model=trainer.outputs['model'],
      baseline_model=model_resolver.outputs['model'] if model_resolver else None,
      eval_config=_runtime_settable('eval_config', eval_config_lib.make_eval_config(
          transform_config.num_classes, min_mean_iou, class_names, eval_options),
          runtime_parameters))

  pusher = DedupPusher(
      model=trainer.outputs['model'],
      model_blessing=evaluator.outputs['blessing'],
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_model_dir)),
  ).with_id('Pusher')

  return tfx.dsl.Pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=pipeline_root,
      components=[c for c in (example_gen, record_validator, statistics_gen, schema_gen,
                              example_validator, anomaly_gate, transform, trainer, model_resolver,
                              evaluator, pusher) if c is not None],
      enable_cache=enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=beam_pipeline_args)
