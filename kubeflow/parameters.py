"""Values for a compiled pipeline's runtime parameters, from the numbers a user thinks in.

The spec's parameters are `data_root` (a path), `train_args` (TrainArgs JSON) and `eval_config` (the
Evaluator's whole TFMA EvalConfig JSON): TFX sets protos at run time only whole. These helpers turn a
step count and a mean-IoU threshold into those JSON values; plain JSON, so submitting imports neither
TensorFlow nor TFMA.
"""

import json
from collections.abc import Iterable

import yaml


def declared_parameters(pipeline_file: str) -> dict[str, dict]:
  """Runtime parameter name -> its spec (`parameterType`, `defaultValue`...) in the pipeline file."""
  with open(pipeline_file, encoding='utf-8') as f:
    spec = yaml.safe_load(f)
  return spec['root'].get('inputDefinitions', {}).get('parameters', {})


def train_args(steps: int) -> str:
  return json.dumps({'num_steps': steps})


def eval_config_with_threshold(eval_config: str, min_mean_iou: float) -> str:
  """`eval_config` (JSON) with `min_mean_iou` as the lower bound of its one value threshold."""
  config = json.loads(eval_config)
  bounded = [
    metric['threshold']['value_threshold']
    for spec in config.get('metrics_specs', [])
    for metric in spec.get('metrics', [])
    if 'lower_bound' in metric.get('threshold', {}).get('value_threshold', {})
  ]
  if len(bounded) != 1:
    raise ValueError(f'expected one metric with a lower bound in eval_config, found {len(bounded)}')
  bounded[0]['lower_bound'] = min_mean_iou
  return json.dumps(config, sort_keys=True)


def submission_arguments(
  pipeline_file: str,
  params: Iterable[str] = (),
  train_steps: int | None = None,
  min_mean_iou: float | None = None,
) -> dict[str, object]:
  """Run arguments from `name=value` strings, plus the two conveniences. Names are checked against
  the pipeline file; parameters left out keep their compiled defaults."""
  declared = declared_parameters(pipeline_file)
  arguments = {}
  for param in params:
    name, sep, value = param.partition('=')
    if not sep or name not in declared:
      raise ValueError(f'{param!r}: expected NAME=VALUE with NAME one of {sorted(declared)}')
    arguments[name] = value
  if train_steps is not None:
    arguments['train_args'] = train_args(train_steps)
  if min_mean_iou is not None:
    arguments['eval_config'] = eval_config_with_threshold(
      arguments.get('eval_config', declared['eval_config']['defaultValue']), min_mean_iou
    )
  return arguments
