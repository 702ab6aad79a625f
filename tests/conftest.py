"""Shared test set-up: Keras 2 before TensorFlow loads, and small data sets built once per session."""
import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import pathlib  # pylint: disable=wrong-import-position

import pytest  # pylint: disable=wrong-import-position

# CI clones the repo next to a copy of shared/; so does every developer checkout.
SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / 'shared' / 'data'


@pytest.fixture(scope='session')
def tiny_demo_data(tmp_path_factory) -> pathlib.Path:
  """16 train / 8 eval demo records of 48x48: enough for the pipeline's wiring, in seconds."""
  from iouseg import demo_data
  root = tmp_path_factory.mktemp('tiny_demo')
  demo_data.write_demo_data(str(root), train_count=16, eval_count=8, size=48, seed=7)
  return root
