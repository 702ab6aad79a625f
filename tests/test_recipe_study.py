"""`benchmarks/recipe_study.py --quick`: the study's command trains every recipe of the study in
its worker processes, writes one row per recipe and every run, compares each recipe with today's
recipe seed by seed, and `--render` rebuilds the same table from the recorded runs."""

import json
import subprocess
import sys

import pytest

from helpers import BENCHMARKS, benchmark_module

STUDY = BENCHMARKS / 'recipe_study.py'


@pytest.fixture()
def recipe_study(monkeypatch):
  return benchmark_module(monkeypatch, 'recipe_study')


def _rows(markdown: str) -> list:
  return [
    [cell.strip() for cell in line.split('|')[1:-1]]
    for line in markdown.splitlines()
    if line.startswith('| demo ')
  ]


@pytest.mark.slow
def test_quick_study_tables_every_recipe_against_today(tmp_path, recipe_study):
  out, runs, rendered = tmp_path / 'table.md', tmp_path / 'runs.json', tmp_path / 'again.md'
  subprocess.run(
    [sys.executable, str(STUDY), '--quick', '--out', str(out), '--json', str(runs)], check=True
  )
  rows = _rows(out.read_text())
  assert [row[1] for row in rows] == list(recipe_study.STUDY)
  recorded = json.loads(runs.read_text())['results']
  assert [result['dataset'] for result in recorded] == ['demo']
  by_recipe = {run['recipe']: run for run in recorded[0]['runs']}
  assert list(by_recipe) == list(recipe_study.STUDY)
  today = by_recipe['today']
  for row in rows:
    run = by_recipe[row[1]]
    assert 0.0 <= run['mean_iou'] <= 1.0 and len(run['validation_curve']) >= 1
    assert float(row[3].split('±')[0]) == pytest.approx(run['mean_iou'], abs=5e-4)
    assert float(row[6]) == pytest.approx(
      run['train_mean_iou'] - max(run['validation_curve']), abs=1e-3
    )
    if row[1] == 'today':
      assert row[4] == '—'
    else:  # one seed: the paired difference is the difference
      assert float(row[4].split('±')[0]) == pytest.approx(
        run['mean_iou'] - today['mean_iou'], abs=1e-3
      )
  assert 'no augmentation' in rows[0][2] and 'h-flip' in rows[1][2]

  subprocess.run(
    [sys.executable, str(STUDY), '--render', str(runs), '--out', str(rendered)], check=True
  )
  assert rendered.read_text() == out.read_text()


def test_unknown_recipe_is_refused_by_name():
  result = subprocess.run(
    [sys.executable, str(STUDY), '--recipes', 'today,mixup'], capture_output=True, text=True
  )
  assert result.returncode == 2 and "'mixup'" in result.stderr
