"""`benchmarks/loss_study.py --quick`: the study's command runs end to end and writes its table."""
import pathlib
import subprocess
import sys

from trainer.losses import LOSS_NAMES

STUDY = pathlib.Path(__file__).resolve().parents[1] / 'benchmarks' / 'loss_study.py'


def test_quick_study_writes_one_row_per_loss(tmp_path):
  out = tmp_path / 'table.md'
  subprocess.run([sys.executable, str(STUDY), '--quick', '--out', str(out)], check=True)
  rows = [line for line in out.read_text().splitlines() if line.startswith('| demo |')]
  assert [row.split('|')[2].strip(' `') for row in rows] == list(LOSS_NAMES) + ['soft_iou']
  assert rows[-1].split('|')[4].strip() == 'prior'
  for row in rows:
    mean_iou = float(row.split('|')[5].split('±')[0])
    assert 0.0 <= mean_iou <= 1.0
  assert 'Command: `python benchmarks/loss_study.py' in out.read_text()
