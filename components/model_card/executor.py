"""The ModelCardGenerator's executor: gathers the card's content, renders the Jinja2 templates
(`components/model_card/templates/*.j2`) and writes the card beside the pushed SavedModel."""

import datetime
import json
import math
import os

import jinja2
from absl import logging
from tfx.components.evaluator import constants as evaluator_constants
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.proto import trainer_pb2
from tfx.types import artifact_utils
from tfx.utils import proto_utils

from components import dedup_pusher, encoder_trainer, serving_warmup
from components.model_card import content
from trainer import config as trainer_config

MODEL_KEY = 'model'
BLESSING_KEY = 'model_blessing'
EVALUATION_KEY = 'evaluation'
PUSHED_MODEL_KEY = 'pushed_model'
EXAMPLES_KEY = 'examples'
STATISTICS_KEY = 'statistics'
QUARANTINE_KEY = 'quarantine'
TRANSFORM_GRAPH_KEY = 'transform_graph'
BASE_MODEL_KEY = 'base_model'
MODEL_CARD_KEY = 'model_card'
TRAINER_CONFIG_KEY = 'trainer_config'
TRAIN_ARGS_KEY = 'train_args'

CARD_NAME = 'model_card'  # model_card.md, model_card.html
FORMATS = ('md', 'html')
WRITTEN_KEY = 'written'
SERVED_CARD_KEY = 'served_card'
# The Pusher's and Evaluator's property names (TFX's).
_PUSHED, _DESTINATION, _VERSION = 'pushed', 'pushed_destination', 'pushed_version'
_BASELINE_ID = evaluator_constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY
_BASELINE_URI = evaluator_constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY
_BLESSED = evaluator_constants.ARTIFACT_PROPERTY_BLESSED_KEY


def _single(input_dict, key):
  artifacts = input_dict.get(key) or []
  return artifacts[0] if artifacts else None


def _int_property(artifact, name: str) -> int:
  return artifact.get_int_custom_property(name) if artifact.has_custom_property(name) else 0


def _string_property(artifact, name: str) -> str:
  return artifact.get_string_custom_property(name) if artifact.has_custom_property(name) else ''


def _format(value, name: str = '') -> str:
  """4 decimals; a NaN class IoU is an absent class; None (no such value) is an em dash."""
  if value is None:
    return '—'
  if isinstance(value, float) and math.isnan(value):
    return 'absent' if name.startswith('iou/') else 'undefined'
  return f'{value:.4f}'


def _signed(value) -> str:
  return '—' if value is None else f'{value:+.4f}'


def _md_cell(value) -> str:
  return str(value).replace('|', '\\|').replace('\n', ' ')


def environment() -> jinja2.Environment:
  env = jinja2.Environment(
    loader=jinja2.PackageLoader('components.model_card', 'templates'),
    autoescape=jinja2.select_autoescape(enabled_extensions=('html.j2',), default=False),
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
  )
  env.filters.update(metric=_format, signed=_signed, md=_md_cell)
  return env


def render(card: dict) -> dict:
  """{'md': text, 'html': text} of the card content."""
  env = environment()
  return {fmt: env.get_template(f'{CARD_NAME}.{fmt}.j2').render(card=card) for fmt in FORMATS}


def _setting_rows(config: dict) -> list:
  """`TrainerConfig.to_dict()` -> (group, setting, value) rows: groups in `GROUPS` order (the JSON
  sorts them), settings sorted within each; a value outside any group gets the group ''."""
  order = [name for name, _ in trainer_config.GROUPS]
  rows = []
  for group, values in sorted(
    config.items(),
    key=lambda item: (order.index(item[0]) if item[0] in order else len(order), item[0]),
  ):
    if isinstance(values, dict):
      rows += [(group, name, value) for name, value in sorted(values.items())]
    else:
      rows.append(('', group, values))
  return rows


def _trainer_settings(exec_properties) -> dict:
  config = json.loads(exec_properties.get(TRAINER_CONFIG_KEY) or '{}')
  steps = None
  train_args = exec_properties.get(TRAIN_ARGS_KEY)
  if train_args:
    args = trainer_pb2.TrainArgs()
    proto_utils.json_to_proto(train_args, args) if isinstance(train_args, str) else args.CopyFrom(
      train_args
    )
    steps = args.num_steps or None
  return {'config': _setting_rows(config), 'train_steps': steps}


def card_content(input_dict, exec_properties) -> dict:
  model = _single(input_dict, MODEL_KEY)
  blessing = _single(input_dict, BLESSING_KEY)
  evaluation = _single(input_dict, EVALUATION_KEY)
  pushed = _single(input_dict, PUSHED_MODEL_KEY)
  base_model = _single(input_dict, BASE_MODEL_KEY)
  examples = _single(input_dict, EXAMPLES_KEY)
  baseline_id = _int_property(blessing, _BASELINE_ID)
  lineage = [
    row
    for row in (
      content.lineage_row('examples (valid records)', examples),
      content.lineage_row('quarantine', _single(input_dict, QUARANTINE_KEY)),
      content.lineage_row('statistics', _single(input_dict, STATISTICS_KEY)),
      content.lineage_row('transform graph', _single(input_dict, TRANSFORM_GRAPH_KEY)),
      content.lineage_row('model', model),
      content.lineage_row('started from', base_model),
      content.lineage_row('evaluation', evaluation),
      content.lineage_row('blessing', blessing),
      content.lineage_row('pushed model', pushed),
    )
    if row
  ]
  if baseline_id:
    lineage.insert(
      next(k for k, row in enumerate(lineage) if row['role'] == 'evaluation'),
      {
        'role': 'baseline model',
        'type': 'Model',
        'id': baseline_id,
        'uri': _string_property(blessing, _BASELINE_URI),
      },
    )
  metrics = content.metrics_content(evaluation.uri)
  version = _string_property(pushed, _VERSION)
  return {
    'title': f'Segmentation model, version {version}',
    'version': version,
    'destination': _string_property(pushed, _DESTINATION),
    'already_serving': bool(_int_property(pushed, dedup_pusher.ALREADY_SERVING_KEY)),
    'generated': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC'),
    'blessed': bool(_int_property(blessing, _BLESSED)),
    'splits': content.split_counts(
      _single(input_dict, STATISTICS_KEY), _single(input_dict, QUARANTINE_KEY), examples
    ),
    'training': {
      **_trainer_settings(exec_properties),
      'augmentation': content.recorded_augmentation(model.uri if model else None),
      # What the Trainer recorded on its model artifact (components.encoder_trainer).
      'encoder_weights': model and _string_property(model, encoder_trainer.WEIGHTS_PATH_PROPERTY),
      'encoder_weights_sha256': model
      and _string_property(model, encoder_trainer.WEIGHTS_SHA256_PROPERTY),
    },
    'started_from': content.lineage_row('started from', base_model),
    'baseline': (
      {'id': baseline_id, 'uri': _string_property(blessing, _BASELINE_URI)} if baseline_id else None
    ),
    'metrics': metrics,
    'lineage': lineage,
  }


def _write_text(path: str, text: str) -> None:
  """Written under a temporary name, then renamed: a reader never sees half a card."""
  fileio.makedirs(os.path.dirname(path))
  partial = path + '.partial'
  with fileio.open(partial, 'w') as handle:
    handle.write(text)
  fileio.rename(partial, path, overwrite=True)


def served_card_dir(destination: str) -> str:
  """`SERVING_DIR/<version>/assets.extra`: the SavedModel's folder for files that loaders and TF
  Serving ignore (TF Serving reads only the warm-up file there)."""
  return os.path.join(destination, serving_warmup.ASSETS_EXTRA)


class Executor(base_executor.BaseExecutor):
  def Do(self, input_dict, output_dict, exec_properties) -> None:
    card_artifact = artifact_utils.get_single_instance(output_dict[MODEL_CARD_KEY])
    pushed = _single(input_dict, PUSHED_MODEL_KEY)
    card_artifact.set_string_custom_property(SERVED_CARD_KEY, '')
    if not _int_property(pushed, _PUSHED):
      logging.info('Nothing was pushed: no model card.')
      card_artifact.set_int_custom_property(WRITTEN_KEY, 0)
      return
    texts = render(card_content(input_dict, exec_properties))
    for fmt, text in texts.items():
      _write_text(os.path.join(card_artifact.uri, f'{CARD_NAME}.{fmt}'), text)
    card_artifact.set_int_custom_property(WRITTEN_KEY, 1)
    served_dir = served_card_dir(_string_property(pushed, _DESTINATION))
    served_md = os.path.join(served_dir, f'{CARD_NAME}.md')
    if _int_property(pushed, dedup_pusher.ALREADY_SERVING_KEY) and fileio.exists(served_md):
      logging.info('The model was already serving with a card (%s): left as it is.', served_md)
    else:
      for fmt, text in texts.items():
        _write_text(os.path.join(served_dir, f'{CARD_NAME}.{fmt}'), text)
      logging.info('Model card written to %s.', served_dir)
    card_artifact.set_string_custom_property(SERVED_CARD_KEY, served_md)
