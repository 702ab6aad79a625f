"""`benchmarks/precision.py`, the GPU path's benchmark mode, runs unchanged on a CPU.

Every setting (float32, mixed_float16, each with and without XLA) trains the Trainer's own model a
few steps and gets a row; without a GPU, mixed precision falls back to float32 and says so. No
timing is asserted: the figures depend on the machine.
"""

import pathlib
import subprocess
import sys

import pytest
import tensorflow as tf

BENCHMARK = pathlib.Path(__file__).resolve().parents[1] / 'benchmarks' / 'precision.py'


@pytest.mark.slow
def test_every_setting_trains_and_reports_the_policy_that_ran(tmp_path):
  out = tmp_path / 'precision.md'
  subprocess.run(
    [
      sys.executable,
      str(BENCHMARK),
      '--image-size',
      '32',
      '--base-filters',
      '4',
      '--depth',
      '2',
      '--batch-size',
      '4',
      '--steps',
      '2',
      '--warmup',
      '1',
      '--repeats',
      '1',
      '--out',
      str(out),
    ],
    check=True,
    capture_output=True,
  )
  rows = {
    line.split('|')[1].strip(): line.split('|')[2:5]
    for line in out.read_text().splitlines()
    if line.startswith('| ') and not line.startswith(('| setting', '| ---'))
  }
  assert set(rows) == {'float32', 'mixed_float16', 'float32 + XLA', 'mixed_float16 + XLA'}
  gpu = bool(tf.config.list_physical_devices('GPU'))
  for name, (policy, images_per_second, _) in rows.items():
    expected = 'mixed_float16' if gpu and name.startswith('mixed') else 'float32'
    assert policy.strip() == expected, name
    assert float(images_per_second) > 0
  assert 'Command: `python benchmarks/precision.py' in out.read_text()
