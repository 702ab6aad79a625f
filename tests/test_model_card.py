"""ModelCardGenerator: a card beside every pushed model, from the artifacts ML Metadata records.

Two LocalDagRunner runs of the tiny model on one pipeline root:
  1. blessed and pushed: the card is in SERVING_DIR/<version>/assets.extra/, Markdown and HTML, and
     names the metrics, the blessing rules and the artifact ids that ML Metadata holds for the run;
  2. an impossible threshold: not blessed, nothing pushed, no card anywhere.
"""

import html
import os
import re

import pytest

from components.model_card import executor as card_executor
from iouseg import run_summary
from pipeline import pipeline as pipeline_lib

from helpers import (
  MODEL_CARD_SOURCES,
  TINY_CLASSES,
  TINY_MODEL,
  recorded_artifacts,
  run_tiny_pipeline,
)

NAME = 'card'
TRAIN_STEPS = 16


@pytest.fixture(scope='module')
def runs(tiny_demo_data, tmp_path_factory):
  base = tmp_path_factory.mktemp('card')
  results = {}
  for name, threshold in (('blessed', 0.0), ('refused', 1.01)):
    metadata = run_tiny_pipeline(
      base, tiny_demo_data, NAME, train_steps=TRAIN_STEPS, min_mean_iou=threshold
    )
    results[name] = {
      'summary': run_summary.latest_run(metadata, NAME),
      'card': recorded_artifacts(metadata, pipeline_lib.MODEL_CARD_ID),
      'serving': sorted(os.listdir(base / 'serving')),
      'metadata': metadata,
    }
    results[name]['records'] = {
      node: recorded_artifacts(metadata, node) for node in MODEL_CARD_SOURCES
    }
  results['base'] = base
  return results


def _cards(run):
  version_dir = run['summary'].pushed_destination
  folder = os.path.join(version_dir, 'assets.extra')
  with open(os.path.join(folder, 'model_card.md'), encoding='utf-8') as f:
    markdown = f.read()
  with open(os.path.join(folder, 'model_card.html'), encoding='utf-8') as f:
    page = f.read()
  return markdown, page


def _table_rows(markdown: str, heading: str) -> list:
  """The body rows of the first table after `## heading`, as lists of cell texts."""
  section = markdown.split(f'## {heading}\n', 1)[1].split('\n## ', 1)[0]
  rows = [line for line in section.splitlines() if line.startswith('|')]
  return [[cell.strip() for cell in row.strip('|').split(' | ')] for row in rows[2:]]


@pytest.mark.e2e
def test_card_is_written_beside_the_pushed_version(runs):
  blessed = runs['blessed']
  assert blessed['summary'].blessed and blessed['summary'].pushed
  markdown, page = _cards(blessed)
  version = os.path.basename(blessed['summary'].pushed_destination)
  assert markdown.startswith(f'# Model card: Segmentation model, version {version}\n')
  assert page.startswith('<!DOCTYPE html>') and f'version {version}</h1>' in page
  _, outputs, _ = blessed['card']
  (card,) = outputs['model_card']
  assert card.get_int_custom_property('written') == 1
  assert card.get_string_custom_property('served_card') == os.path.join(
    blessed['summary'].pushed_destination, 'assets.extra', 'model_card.md'
  )
  # The component's own artifact holds the same card.
  with open(os.path.join(card.uri, 'model_card.md'), encoding='utf-8') as f:
    assert f.read() == markdown
  # TF Serving sees one version, and the card is no version of its own.
  assert blessed['serving'] == [version]


@pytest.mark.e2e
def test_card_names_the_metrics_of_the_evaluation(runs):
  markdown, page = _cards(runs['blessed'])
  metrics = runs['blessed']['summary'].candidate_metrics
  summary_rows = {row[0]: row[1:] for row in _table_rows(markdown, 'Evaluation (eval split)')}
  mean_iou_row = next(v for k, v in summary_rows.items() if '(`mean_iou`)' in k)
  assert mean_iou_row[0] == f'{metrics["mean_iou"]:.4f}' and mean_iou_row[1] == '—'
  for k in range(TINY_CLASSES):
    name = f'iou/class_{k}'
    assert f'| class_{k} (`{name}`) | {metrics[name]:.4f} | — | — |' in markdown
    assert f'<code>{name}</code>' in page
  assert 'No baseline: the first model judged here' in markdown


@pytest.mark.e2e
def test_card_names_the_blessing_rules(runs):
  markdown, page = _cards(runs['blessed'])
  rules = _table_rows(markdown, 'Blessing rules')
  assert ['mean_iou >= 0', 'every slice', 'passed'] in rules
  assert 'mean_iou &gt;= 0' in page and '<td class="passed">passed</td>' in page


@pytest.mark.e2e
def test_card_lineage_ids_are_the_ones_ml_metadata_holds(runs):
  blessed = runs['blessed']
  markdown, page = _cards(blessed)
  records = blessed['records']
  expected = {
    'examples (valid records)': records['RecordValidator'][1]['valid_examples'][0],
    'quarantine': records['RecordValidator'][1]['quarantine'][0],
    'statistics': records['StatisticsGen'][1]['statistics'][0],
    'transform graph': records['Transform'][1]['transform_graph'][0],
    'model': records['Trainer'][1]['model'][0],
    'evaluation': records['Evaluator'][1]['evaluation'][0],
    'blessing': records['Evaluator'][1]['blessing'][0],
    'pushed model': records['Pusher'][1]['pushed_model'][0],
  }
  rows = {row[0]: row[1:] for row in _table_rows(markdown, 'Lineage (ML Metadata artifact ids)')}
  for role, artifact in expected.items():
    assert rows[role] == [artifact.type_name, str(artifact.id), f'`{artifact.uri}`'], role
    assert f'data-artifact-id="{artifact.id}"' in page
  # The card's own inputs in ML Metadata are these very artifacts.
  inputs, _, _ = blessed['card']
  assert {a.id for artifacts in inputs.values() for a in artifacts} == {
    a.id for a in expected.values()
  }


@pytest.mark.e2e
def test_card_describes_data_and_training(runs):
  markdown, _ = _cards(runs['blessed'])
  data_rows = _table_rows(markdown, 'Data')
  assert data_rows[:2] == [['train', '16', '16', '0', '16'], ['eval', '8', '8', '0', '8']]
  assert 'Ground-truth pixel share per class' in markdown
  shares = [float(m) for m in re.findall(r'\| class_\d \| \d+ \| ([\d.]+) % \|', markdown)]
  assert len(shares) == TINY_CLASSES and sum(shares) == pytest.approx(100, abs=0.05)
  assert 'Started from: cold start' in markdown
  assert f'Train steps: {TRAIN_STEPS}.' in markdown
  config = {name: value for _, name, value in _table_rows(markdown, 'Training')}
  for name, value in TINY_MODEL.items():
    assert config[name] == str(value), name


@pytest.mark.e2e
def test_no_card_when_the_blessing_fails(runs):
  refused = runs['refused']
  assert refused['summary'].blessed is False and not refused['summary'].pushed
  assert refused['summary'].component_states[pipeline_lib.MODEL_CARD_ID] == 'executed'
  _, outputs, _ = refused['card']
  (card,) = outputs['model_card']
  assert card.get_int_custom_property('written') == 0
  assert not os.path.exists(os.path.join(card.uri, 'model_card.md'))
  # Nothing new served, and the first version's card is the only card.
  assert refused['serving'] == runs['blessed']['serving']
  cards = [
    os.path.join(folder, f)
    for folder, _, files in os.walk(runs['base'] / 'serving')
    for f in files
    if f.startswith('model_card')
  ]
  assert len(cards) == 2  # model_card.md and model_card.html of the first version


def test_templates_escape_html_and_markdown_cells():
  texts = card_executor.render(
    {
      'title': 'v <1>',
      'version': '1',
      'destination': '/s/1',
      'already_serving': False,
      'generated': 'now',
      'blessed': True,
      'splits': [
        {
          'split': 'a|b',
          'input': 2,
          'valid': 1,
          'quarantined': 1,
          'statistics_records': 1,
          'reasons': ['<script>x</script>'],
        }
      ],
      'training': {'config': [('losses', 'loss', 'a|b')], 'train_steps': None},
      'started_from': None,
      'baseline': None,
      'lineage': [],
      'metrics': {
        'summary': [],
        'classes': [],
        'slices': [],
        'rules': [],
        'eval_pixel_shares': [],
        'has_baseline': False,
        'validation_ok': True,
      },
    }
  )
  assert '| a\\|b |' in texts['md'] and '<script>' not in texts['html']
  assert html.escape('<script>x</script>') in texts['html']
