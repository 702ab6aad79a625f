"""`benchmarks/loss_study.py --quick`: the study's command runs end to end and writes its table and
its runs; the paired comparison subtracts the same seed's cross-entropy run."""

import json
import subprocess
import sys

import pytest

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


def test_paired_differences_match_seeds(loss_study):
  result = {
    'runs': [
      {'loss': 'cross_entropy', 'seed': 0, 'mean_iou': 0.5},
      {'loss': 'cross_entropy', 'seed': 1, 'mean_iou': 0.7},
      {'loss': 'soft_iou', 'seed': 1, 'mean_iou': 0.75},
      {'loss': 'soft_iou', 'seed': 0, 'mean_iou': 0.52},
    ]
  }
  assert loss_study.paired_differences(result, 'soft_iou') == pytest.approx([0.05, 0.02])
