"""`benchmarks/loss_study.py --quick`: the study's command runs end to end and writes its table and
its runs, adds a later command's runs to a recorded study (`--add-to`) and renders both; the paired
comparison subtracts the same seed's cross-entropy run; the lateral and thin sets it trains on."""

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

from helpers import BENCHMARKS, benchmark_module

STUDY = BENCHMARKS / 'loss_study.py'


@pytest.fixture()
def loss_study(monkeypatch):
  return benchmark_module(monkeypatch, 'loss_study')


@pytest.mark.slow
def test_quick_study_writes_one_row_and_one_run_per_loss(tmp_path, loss_study):
  out, runs = tmp_path / 'table.md', tmp_path / 'runs.json'
  subprocess.run(
    [sys.executable, str(STUDY), '--quick', '--out', str(out), '--json', str(runs)], check=True
  )
  rows = [line.split('|') for line in out.read_text().splitlines() if line.startswith('| demo |')]
  assert [row[2].strip(' `') for row in rows] == list(loss_study.STUDY_LOSSES)
  recorded = json.loads(runs.read_text())['results'][0]['runs']
  assert [run['loss'] for run in recorded] == list(loss_study.STUDY_LOSSES)
  baseline = next(run for run in recorded if run['loss'] == 'cross_entropy')
  for row, run in zip(rows, recorded):
    assert 0.0 <= run['mean_iou'] <= 1.0 and len(run['per_class_iou']) == 4
    assert float(row[3].split('±')[0]) == pytest.approx(run['mean_iou'], abs=5e-4)
    if run['loss'] != 'cross_entropy':  # one seed: the paired difference is the difference
      assert float(row[4].split('±')[0]) == pytest.approx(
        run['mean_iou'] - baseline['mean_iou'], abs=1e-3
      )
  assert 'Command: `python benchmarks/loss_study.py --quick' in out.read_text()

  # A later command's runs added to the recorded ones: the recorded table stays as it was, the
  # added one follows under its own command, and --render gives back the whole.
  merged, rendered = tmp_path / 'merged.md', tmp_path / 'rendered.md'
  compound = 'cross_entropy+soft_iou_per_class'
  add = ['--quick', '--losses', compound, '--add-to', str(runs), '--out', str(merged)]
  subprocess.run([sys.executable, str(STUDY), *add], check=True)
  first, added = merged.read_text().split('\n\n| data |')
  assert first + '\n' == out.read_text()
  assert f'| demo | `{compound}` |' in added and f'--losses {compound} --add-to' in added
  added_run = json.loads(runs.read_text())['added'][0]['results'][0]['runs']
  assert [run['loss'] for run in added_run] == [compound]
  # The rule's row pairs the added run with the recorded cross-entropy run of its seed.
  rule = next(line for line in added.splitlines() if line.startswith(f'| `{compound}` | '))
  assert float(rule.split('|')[2]) == pytest.approx(
    added_run[0]['mean_iou'] - baseline['mean_iou'], abs=1e-3
  )
  subprocess.run(
    [sys.executable, str(STUDY), '--render', str(runs), '--out', str(rendered)], check=True
  )
  assert rendered.read_text() == merged.read_text()


def test_paired_differences_match_seeds(monkeypatch):
  study_table = benchmark_module(monkeypatch, 'study_table')
  result = {
    'runs': [
      {'loss': 'cross_entropy', 'seed': 0, 'mean_iou': 0.5},
      {'loss': 'cross_entropy', 'seed': 1, 'mean_iou': 0.7},
      {'loss': 'soft_iou', 'seed': 1, 'mean_iou': 0.75},
      {'loss': 'soft_iou', 'seed': 0, 'mean_iou': 0.52},
    ]
  }
  paired = study_table.paired_differences(result, 'soft_iou', key='loss', baseline='cross_entropy')
  assert paired == pytest.approx([0.05, 0.02])


@pytest.mark.parametrize('dataset', ['lateral', 'thin'])
def test_the_sets_added_for_issue_21(dataset, tmp_path, monkeypatch):
  """At the model size (32 px): the lateral set's classes sit on their sides and are named so the
  default flip swaps them; the thin set's bands are 2-3 px wide (a 2x2 square of one class fits in
  them, a 4x4 one almost nowhere: only where a wave turns steeply)."""
  from trainer.config import TrainerConfig

  convergence = benchmark_module(monkeypatch, 'convergence')
  (config, train, _), _ = convergence.prepare(dataset, str(tmp_path), image_size=32)
  assert config.names == convergence.CLASS_NAMES[dataset] and train[0].shape[1:3] == (32, 32)
  class_ids = train[1].argmax(-1)
  assert all((class_ids == k).any() for k in (1, 2))
  if dataset == 'lateral':
    assert TrainerConfig(data=config).flip_swap_pairs == ((1, 2),)
    columns = np.nonzero(class_ids == 1)[2], np.nonzero(class_ids == 2)[2]
    assert (columns[0] < 16).mean() > 0.9 and (columns[1] >= 16).mean() > 0.9
  else:
    for k in (1, 2):
      band = class_ids == k
      inside = [ndimage.binary_erosion(band, np.ones((1, n, n), bool)).sum() for n in (2, 4)]
      assert inside[0] > 0 and inside[1] < 0.01 * band.sum(), (k, inside, band.sum())


def test_unknown_data_set_is_refused_by_name(loss_study):
  with pytest.raises(
    SystemExit, match="unknown \\['mri'\\]; data sets: demo, lateral, thin, nuclei"
  ):
    loss_study.main(['--datasets', 'mri'])


def test_the_rule_rejects_a_loss_that_stalls_on_one_set(loss_study):
  """The rule picks the best mean paired gain over every set among losses never more than a point
  below cross-entropy: one stalled seed (a set's mean paired -0.17) rules a loss out, however far
  ahead it is elsewhere; a loss run on only some sets is not eligible."""

  def runs(dataset, by_loss):
    return {
      'dataset': dataset,
      'runs': [
        {'loss': loss, 'seed': seed, 'mean_iou': value}
        for loss, values in by_loss.items()
        for seed, value in enumerate(values)
      ],
    }

  parts = [
    {
      'results': [
        runs(
          'demo',
          {
            'cross_entropy': [0.94, 0.95, 0.92],
            'soft_iou_per_class': [0.97, 0.98, 0.96],
            'cross_entropy+soft_iou_per_class': [0.95, 0.98, 0.96],
            'lovasz': [0.99, 0.99, 0.99],
          },
        ),
        runs(
          'lateral',
          {
            'cross_entropy': [0.999, 0.999, 0.999],
            'soft_iou_per_class': [0.999, 0.49, 0.999],
            'cross_entropy+soft_iou_per_class': [0.999, 0.995, 0.999],
          },
        ),
      ]
    }
  ]
  lines = loss_study.rule_lines(parts)
  assert lines[-1] == 'By the rule, the default is `cross_entropy+soft_iou_per_class`.'
  per_class = next(line for line in lines if line.startswith('| `soft_iou_per_class` |'))
  assert per_class.endswith('| no |') and '-0.170' in per_class
