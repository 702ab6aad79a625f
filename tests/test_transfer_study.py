"""`benchmarks/transfer_study.py --quick`: the command pretrains an encoder, saves it as the file
`--encoder-weights` takes, fine-tunes the demo set's first 24 records from it and from random weights
on the same seed, and writes a table with one row per init whose paired column is their difference."""

import json
import subprocess
import sys

import pytest

from helpers import BENCHMARKS

STUDY = BENCHMARKS / 'transfer_study.py'


@pytest.mark.slow
def test_quick_study_runs_both_inits_and_pairs_them(tmp_path):
  out, runs = tmp_path / 'table.md', tmp_path / 'runs.json'
  done = subprocess.run(
    [sys.executable, str(STUDY), '--quick', '--out', str(out), '--json', str(runs)],
    check=True,
    capture_output=True,
    text=True,
  )
  recorded = json.loads(runs.read_text())['results']
  assert recorded['pretraining']['weights_file'] == 'assets.extra/encoder_weights.h5'
  (demo,) = recorded['datasets']
  assert demo['dataset'] == 'demo' and demo['train_records'] == 24
  by_init = {run['init']: run for run in demo['runs']}
  assert sorted(by_init) == ['pretrained', 'random']
  for run in by_init.values():
    assert 0.0 <= run['mean_iou'] <= 1.0 and len(run['per_class_iou']) == 4
  # Only the pretrained run read the file, through the Trainer's loader.
  assert done.stdout.count('Encoder weights: 104 layers from ') == 1

  rows = {
    row[3].strip(): row
    for row in (line.split('|') for line in out.read_text().splitlines())
    if row[1:2] == [' demo ']
  }
  assert sorted(rows) == ['pretrained', 'random'] and rows['random'][2].strip() == '24'
  assert float(rows['pretrained'][5].split('±')[0]) == pytest.approx(
    by_init['pretrained']['mean_iou'] - by_init['random']['mean_iou'], abs=1e-3
  )
  text = out.read_text()
  assert 'ImageNet-initialised figures are not measured here' in text
  assert 'Command: `python benchmarks/transfer_study.py --quick' in text

  rendered = tmp_path / 'rendered.md'
  subprocess.run(
    [sys.executable, str(STUDY), '--render', str(runs), '--out', str(rendered)], check=True
  )
  assert rendered.read_text() == text
