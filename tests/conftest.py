"""Test set-up: Keras 2 before TensorFlow loads (in this process and the commands the tests start),
and the fixtures several test files use. Shared constants and helper functions are in `helpers.py`.
"""

import os
import pathlib

import pytest

# TFX 1.16 needs Keras 2: TensorFlow reads this when it is first imported. Nothing above loads it.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


@pytest.fixture(scope='session')
def tiny_demo_data(tmp_path_factory) -> pathlib.Path:
  """16 train / 8 eval demo records of 48x48: enough for the pipeline's wiring, in seconds."""
  from iouseg import demo_data

  root = tmp_path_factory.mktemp('tiny_demo')
  demo_data.write_demo_data(str(root), train_count=16, eval_count=8, size=48, seed=7)
  return root
