"""Reviewing a run: the blessing's reasons as `iouseg run` prints them, TensorBoard's mask images,
`iouseg report` (read back, and rendered in headless Chromium) and the review notebook.

One history, made as a user would through the command line, with LocalDagRunner, real Beam, MLMD
(SQLite) and TFMA on the tiny demo set:
  1. a first model, blessed;
  2. a worse one (learning rate 1e-12; the command refuses 0) judged against it with class floors,
     a per-class regression limit and slices: not blessed, for reasons the run prints and the report shows.
"""

import base64
import contextlib
import glob
import io
import math
import os
import subprocess

import nbclient
import nbformat
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from bs4 import BeautifulSoup
from PIL import Image

from iouseg import cli, run_summary
from iouseg.report import charts
from trainer import tensorboard_images

from helpers import TINY_MODEL, tiny_model_flags
from helpers import TINY_SIZE as SIZE

NAME = 'review'
CLASSES = ['background', 'disc', 'square', 'triangle']
CHROMIUM = '/usr/bin/chromium'
NOTEBOOK = os.path.join(os.path.dirname(__file__), '..', 'notebooks', 'review_evaluation.ipynb')

pytestmark = pytest.mark.e2e


def _iouseg(*argv) -> str:
  """Runs the `iouseg` command in this process; returns what it printed."""
  buffer = io.StringIO()
  with contextlib.redirect_stdout(buffer):
    assert cli.main([str(a) for a in argv]) == 0
  return buffer.getvalue()


@pytest.fixture(scope='module')
def history(tiny_demo_data, tmp_path_factory):
  base = tmp_path_factory.mktemp('review')
  metadata = base / 'metadata.sqlite'
  common = [
    '--data-root',
    tiny_demo_data,
    '--pipeline-root',
    base / 'root',
    '--serving-dir',
    base / 'serving',
    '--metadata',
    metadata,
    '--pipeline-name',
    NAME,
    *tiny_model_flags(),
    '--train-steps',
    '60',
    '--eval-steps',
    '1',
    '--class-names',
    ','.join(CLASSES),
    '--min-mean-iou',
    '0.1',
  ]
  _iouseg('run', *common)
  printed = _iouseg(
    'run',
    *common,
    '--learning-rate',
    '1e-12',
    '--class-min-iou',
    'disc=0.9',
    '--max-class-drop',
    '0.05',
    '--class-presence-slices',
    '--slice-by',
    'image/format',
  )
  report = base / 'report.html'
  _iouseg('report', '--metadata', metadata, '--pipeline-name', NAME, '--output', report)
  return {
    'metadata': str(metadata),
    'printed': printed,
    'report': report,
    'summary': run_summary.latest_run(str(metadata), NAME),
  }


def _tfma_values(evaluation_uri: str) -> dict:
  """(slice text, model, metric) -> value, straight from tfma.load_metrics."""
  values = {}
  for metrics in tfma.load_metrics(evaluation_uri):
    name = run_summary.slice_name(metrics.slice_key)
    for item in metrics.metric_keys_and_values:
      if not item.key.is_diff and item.value.HasField('double_value'):
        values[(name, item.key.model_name, item.key.name)] = item.value.double_value.value
  return values


def test_run_prints_each_failed_rule_with_class_slice_and_both_values(history):
  summary, printed = history['summary'], history['printed']
  assert summary.blessed is False and not summary.pushed
  assert 'Blessed: NO' in printed
  failed = [
    line.strip()[len('failed: ') :]
    for line in printed.splitlines()
    if line.strip().startswith('failed: ')
  ]
  assert failed == summary.failures
  candidate, baseline = summary.candidate_metrics, summary.baseline_metrics
  assert f'iou/disc = {candidate["iou/disc"]:.4f}: required >= 0.9' in failed
  assert (
    f'iou/background: candidate {candidate["iou/background"]:.4f} vs baseline '
    f'{baseline["iou/background"]:.4f}, change '
    f'{candidate["iou/background"] - baseline["iou/background"]:+.4f}; at most 0.05 may be lost'
  ) in failed
  assert any(line.startswith('mean_iou = ') and ' on slice label_has_' in line for line in failed)
  # What TFMA's blessing itself recorded: the per-class rules on the whole split only.
  validation = tfma.load_validation_result(summary.evaluation_uri)
  class_rules = {
    (run_summary.slice_name(v.slice_key), f.metric_key.name)
    for v in validation.metric_validations_per_slice
    for f in v.failures
    if f.metric_key.name.startswith('iou/')
  }
  assert class_rules and all(slice_text == run_summary.OVERALL for slice_text, _ in class_rules)


def test_trainer_writes_predicted_masks_to_tensorboard_each_epoch(history):
  steps = {}
  for path in glob.glob(
    os.path.join(history['summary'].model_run_uri, tensorboard_images.IMAGES_RUN, '*')
  ):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == tensorboard_images.IMAGES_TAG:
          width, height, *pngs = tf.make_ndarray(value.tensor)
          steps[event.step] = [tf.io.decode_png(png).shape for png in pngs]
          assert (int(width), int(height)) == (3 * SIZE, SIZE)
  assert steps == {epoch: [(SIZE, 3 * SIZE, 3)] * 3 for epoch in range(TINY_MODEL['epochs'])}


def test_every_number_in_the_report_is_tfmas(history):
  summary = history['summary']
  soup = BeautifulSoup(history['report'].read_text(), 'html.parser')
  assert soup.select_one('#verdict-text').get_text() == 'Not blessed'
  assert [li.get_text() for li in soup.select('#reasons li')] == summary.failures

  tfma_values = _tfma_values(summary.evaluation_uri)
  cells = soup.select('td[data-value]')
  for cell in cells:
    row = cell.find_parent('tr')
    key = (row.get('data-slice', run_summary.OVERALL), cell['data-model'], cell['data-metric'])
    expected, value = tfma_values[key], float(cell['data-value'])
    assert value == expected or (math.isnan(value) and math.isnan(expected)), key
    assert cell.get_text() == run_summary.format_value(cell['data-metric'], expected), key
  checked = len(cells)
  assert checked > 50

  matrix = summary.candidate_metrics['confusion_matrix']
  for (i, j), count in np.ndenumerate(matrix):
    assert soup.select_one(f'#confusion-matrix [id="cell-{i}-{j}"]').get_text().strip() == str(
      count
    )
  for model in ('candidate', 'baseline'):
    assert len(soup.select(f'#class-iou-chart [id^="bar-{model}-"]')) == len(CLASSES)

  eval_records = 8
  samples = soup.select('#gallery figure.sample')
  assert len(samples) == eval_records and len(soup.select('#gallery img')) == eval_records
  scores = [float(s['data-iou']) for s in samples]
  assert scores == sorted(scores, key=lambda v: (math.isnan(v), v))
  assert 'they add up to the confusion matrix in the TFMA output' in soup.get_text()
  links = [a['href'] for a in soup.select('#links a')]
  assert 'file://' + summary.evaluation_uri in links and 'file://' + summary.model_run_uri in links


def _chromium(tmp_path, *args) -> str:
  profile = tmp_path / 'chromium-profile'
  result = subprocess.run(
    [
      CHROMIUM,
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      f'--user-data-dir={profile}',
      *args,
    ],
    capture_output=True,
    text=True,
    timeout=180,
    check=True,
  )
  return result.stdout


def _pixels_of(shot: np.ndarray, hex_colour: str) -> int:
  rgb = [int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]
  return int((shot == rgb).all(axis=-1).sum())


@pytest.mark.skipif(
  not os.path.exists(CHROMIUM) and os.environ.get('CI') != 'true',
  reason=f'{CHROMIUM} missing (apt-get install -y chromium); CI always runs this',
)
def test_report_renders_in_headless_chromium(history, tmp_path):
  url = history['report'].resolve().as_uri()
  shot_path = tmp_path / 'report.png'
  _chromium(tmp_path, f'--screenshot={shot_path}', '--window-size=1200,2400', url)
  shot = np.asarray(Image.open(shot_path).convert('RGB'))
  assert shot.shape == (2400, 1200, 3)
  assert len(np.unique(shot.reshape(-1, 3), axis=0)) > 500  # not a blank or error page
  assert _pixels_of(shot, '#fce8e6') > 20000  # the "not blessed" box
  assert _pixels_of(shot, charts.CANDIDATE_COLOUR) > 100  # the bars (and their legend)
  assert _pixels_of(shot, charts.BASELINE_COLOUR) > 2000

  # The DOM Chromium built from the file: verdict, one bar per class and model, every image.
  dom = BeautifulSoup(_chromium(tmp_path, '--dump-dom', url), 'html.parser')
  assert dom.select_one('#verdict-text').get_text() == 'Not blessed'
  assert len(dom.select('[id^="bar-candidate-"]')) == len(CLASSES)
  images = dom.select('#gallery img')
  assert len(images) == 8

  # Every gallery image is decoded and drawn pixel for pixel: a row of each is in a full-page shot.
  full_path = tmp_path / 'full.png'
  _chromium(tmp_path, f'--screenshot={full_path}', '--window-size=1200,8000', url)
  rows = [row.tobytes() for row in np.asarray(Image.open(full_path).convert('RGB'))]
  for image in images:
    png = np.asarray(
      Image.open(io.BytesIO(base64.b64decode(image['src'].split(',', 1)[1]))).convert('RGB')
    )
    middle = png[png.shape[0] // 2].tobytes()
    assert any(middle in row for row in rows), image['alt']


def test_notebook_reviews_the_latest_evaluation_and_the_model_history(history, monkeypatch):
  monkeypatch.setenv('IOUSEG_METADATA', history['metadata'])
  monkeypatch.setenv('IOUSEG_PIPELINE', NAME)
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  nbclient.NotebookClient(
    notebook,
    timeout=300,
    kernel_name='python3',
    store_widget_state=True,
    resources={'metadata': {'path': os.path.dirname(NOTEBOOK)}},
  ).execute()
  printed = ''.join(
    o.get('text', '')
    for c in notebook.cells
    if c.cell_type == 'code'
    for o in c.outputs
    if o.output_type == 'stream'
  )
  assert f'TFMA output: {history["summary"].evaluation_uri}' in printed
  assert '2 Evaluator outputs, 2 model versions' in printed

  widgets = notebook.metadata['widgets']['application/vnd.jupyter.widget-state+json']['state']
  views = {}
  for widget in widgets.values():
    views.setdefault(widget['model_name'], []).append(widget['state'].get('data'))
  overall = views['SlicingMetricsModel'][0][0]
  assert overall['slice'] == 'Overall'
  candidate = history['summary'].candidate_metrics
  assert overall['metrics']['']['']['mean_iou']['doubleValue'] == candidate['mean_iou']
  first, second = views['TimeSeriesModel'][0]
  assert second['metrics']['']['']['mean_iou']['doubleValue'] == candidate['mean_iou']
  assert (
    first['metrics']['']['']['mean_iou']['doubleValue']
    == (history['summary'].baseline_metrics['mean_iou'])
  )
  assert {entry['slice'] for entry in views['SlicingMetricsModel'][1]} == {'image/format:png'}
