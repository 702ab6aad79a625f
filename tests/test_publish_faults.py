"""Publishing survives a killed push, and a serving dir with nothing served means no baseline.

A push killed while copying leaves what `DedupPusher` leaves then: a staging dir
(`.staging-<version>-<host>-<pid>`, with a dead pid) holding part or all of a SavedModel. A numbered
folder without `saved_model.pb` is what an in-place copy (TFX's own Pusher) leaves. Neither is a
model to `ServedModelBaseline`, `iouseg predict` or the de-duplication; the next push removes the
staging dir and publishes a complete version by one rename.

The unit checks use real SavedModels (tf.saved_model.save, fingerprints included) and run the
Pusher's executor itself; the e2e check runs `iouseg run --baseline serving_dir` as a user does, on
a serving dir holding only such left-overs, then `iouseg report` and `iouseg predict`.
"""

import os
import shutil
import socket
import subprocess
import sys

import pytest
import tensorflow as tf
from bs4 import BeautifulSoup
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components import dedup_pusher, served_baseline, serving_dir
from iouseg import predict

from helpers import SAMPLES, iouseg_run_argv, tiny_model_flags

NAME = 'publish_faults'


def _saved_model(path, value: float) -> str:
  """A real SavedModel (with its fingerprint) whose one function returns `value`."""
  module = tf.Module()
  module.v = tf.Variable(value)
  module.f = tf.function(lambda: module.v * 1.0, input_signature=[])
  tf.saved_model.save(module, str(path))
  return str(path)


def _dead_pid() -> int:
  process = subprocess.Popen([sys.executable, '-c', 'pass'])
  process.wait()
  return process.pid


def _killed_push(serving, model, version='300') -> str:
  """What a push killed while copying `model` leaves: its staging dir, this host's, process gone."""
  name = f'{serving_dir.STAGING_PREFIX}{version}-{socket.gethostname()}-{_dead_pid()}'
  shutil.copytree(model, os.path.join(serving, name))
  return name


def _incomplete_version(serving, model, version='200') -> None:
  """A numbered folder with everything but `saved_model.pb`."""
  shutil.copytree(model, os.path.join(serving, version))
  os.remove(os.path.join(serving, version, 'saved_model.pb'))


@pytest.fixture
def left_overs(tmp_path):
  served = _saved_model(tmp_path / 'served', 1.0)
  candidate = _saved_model(tmp_path / 'candidate', 2.0)
  serving = tmp_path / 'serving'
  os.makedirs(serving)
  shutil.copytree(served, serving / '100')
  _incomplete_version(serving, candidate)
  staging = _killed_push(serving, candidate)
  return dict(serving=str(serving), served=served, candidate=candidate, staging=staging)


def test_readers_take_only_complete_versions(left_overs):
  serving = left_overs['serving']
  assert sorted(os.listdir(serving)) == sorted(['100', '200', left_overs['staging']])
  assert serving_dir.complete_versions(serving) == ['100']
  assert served_baseline.newest_served_version(serving) == '100'
  assert predict.resolve_saved_model(serving) == os.path.join(serving, '100')
  # The candidate sits whole in the staging dir and all but saved_model.pb in '200': neither is a
  # served copy of it.
  assert dedup_pusher.find_existing_version(left_overs['candidate'], serving) is None
  assert dedup_pusher.find_existing_version(left_overs['served'], serving) == '100'


def test_nothing_but_left_overs_is_nothing_served(tmp_path):
  serving = tmp_path / 'serving'
  os.makedirs(serving)
  candidate = _saved_model(tmp_path / 'candidate', 2.0)
  _incomplete_version(serving, candidate)
  _killed_push(serving, candidate)
  assert served_baseline.newest_served_version(str(serving)) is None
  assert served_baseline.served_state(str(serving)) == ''
  with pytest.raises(FileNotFoundError, match='numbered versions'):
    predict.resolve_saved_model(str(serving))


def _push(tmp_path, model_dir, serving):
  """Runs DedupPusher's executor on a blessed Model artifact whose SavedModel is `model_dir`."""
  call = tmp_path / f'push{len(list(tmp_path.glob("push*")))}'
  model = standard_artifacts.Model()
  model.uri = str(call / 'model')
  shutil.copytree(model_dir, os.path.join(model.uri, 'Format-Serving'))
  blessing = standard_artifacts.ModelBlessing()
  blessing.uri = str(call / 'blessing')
  blessing.set_int_custom_property('blessed', 1)
  pushed = standard_artifacts.PushedModel()
  pushed.uri = str(call / 'pushed')
  destination = pusher_pb2.PushDestination(
    filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=serving)
  )
  dedup_pusher.Executor().Do(
    {'model': [model], 'model_blessing': [blessing]},
    {'pushed_model': [pushed]},
    {'push_destination': proto_utils.proto_to_json(destination)},
  )
  return pushed


def test_next_push_cleans_the_staging_dir_and_publishes_a_complete_newest_version(
  tmp_path, left_overs
):
  serving = left_overs['serving']
  pushed = _push(tmp_path, left_overs['candidate'], serving)
  version = pushed.get_string_custom_property('pushed_version')
  assert not serving_dir.staging_dirs(serving)
  # The incomplete '200' is left alone (not this push's), but the new version is numbered above it.
  assert sorted(os.listdir(serving), key=int) == ['100', '200', version]
  assert int(version) > 200
  assert os.path.isfile(os.path.join(serving, version, 'saved_model.pb'))
  assert served_baseline.newest_served_version(serving) == version
  loaded = tf.saved_model.load(predict.resolve_saved_model(serving))
  assert float(loaded.f()) == 2.0
  # Pushed again: the complete version is found, nothing new is copied.
  again = _push(tmp_path, left_overs['candidate'], serving)
  assert again.get_int_custom_property(dedup_pusher.ALREADY_SERVING_KEY) == 1
  assert again.get_string_custom_property('pushed_version') == version
  assert len(os.listdir(serving)) == 3


def test_a_staging_dir_of_a_running_push_is_kept(tmp_path):
  serving = tmp_path / 'serving'
  own = serving_dir.staging_path(str(serving), '400')  # this process: alive
  os.makedirs(own)
  other_host = serving / f'{serving_dir.STAGING_PREFIX}400-elsewhere-1'
  os.makedirs(other_host)  # just written: its push may still be running on that host
  assert serving_dir.clean_staging(str(serving)) == []
  old = serving_dir.STALE_STAGING_SECONDS + 60
  os.utime(other_host, (os.path.getmtime(other_host) - old,) * 2)
  assert serving_dir.clean_staging(str(serving)) == [other_host.name]
  assert os.path.isdir(own)


def test_a_failed_copy_leaves_no_version(tmp_path):
  """A push that fails while copying (here: the model has vanished) leaves neither a version nor
  its staging dir."""
  serving = str(tmp_path / 'serving')
  with pytest.raises((tf.errors.NotFoundError, FileNotFoundError)):
    dedup_pusher.publish(str(tmp_path / 'missing'), serving)
  assert os.listdir(serving) == []


@pytest.fixture(scope='module')
def served_dir_run(tiny_demo_data, tmp_path_factory):
  """`iouseg run --baseline serving_dir` on a serving dir holding only a killed push's staging dir
  and an incomplete numbered folder, then `iouseg report` and `iouseg predict`."""
  base = tmp_path_factory.mktemp('publish_faults')
  serving = base / 'serving'
  os.makedirs(serving)
  leftover_model = _saved_model(base / 'leftover', 3.0)
  _incomplete_version(serving, leftover_model, version='5')
  staging = _killed_push(serving, leftover_model, version='6')
  env = {**os.environ, 'TF_USE_LEGACY_KERAS': '1'}
  argv = iouseg_run_argv(base, tiny_demo_data, NAME, train_steps=6) + ['--baseline', 'serving_dir']
  run = subprocess.run(
    argv + tiny_model_flags(), env=env, capture_output=True, text=True, timeout=1200
  )
  report = base / 'report.html'
  cli = argv[: argv.index('run')]
  report_run = subprocess.run(
    cli
    + ['report', '--metadata', str(base / 'metadata.sqlite'), '--pipeline-name', NAME]
    + ['--output', str(report)],
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  image = sorted((SAMPLES / 'nuclei' / 'train' / 'images').glob('*.png'))[0]
  predict_run = subprocess.run(
    cli + ['predict', '--model', str(serving), '--output', str(base / 'predicted'), str(image)],
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  return dict(
    run=run,
    report_run=report_run,
    report=report,
    predict_run=predict_run,
    serving=serving,
    staging=staging,
  )


@pytest.mark.e2e
def test_a_real_push_leaves_only_complete_versions(served_dir_run):
  run = served_dir_run['run']
  assert run.returncode == 0, run.stdout + run.stderr
  serving = served_dir_run['serving']
  names = sorted(os.listdir(serving))
  assert served_dir_run['staging'] not in names and not serving_dir.staging_dirs(str(serving))
  (new,) = [name for name in names if name != '5']
  assert new.isdigit() and int(new) > 5
  assert os.path.isfile(serving / new / 'saved_model.pb')
  assert f'Pushed to: {serving / new}' in run.stdout
  predicted = served_dir_run['predict_run']
  assert predicted.returncode == 0, predicted.stdout + predicted.stderr
  assert '.mask.png' in predicted.stdout


@pytest.mark.e2e
def test_nothing_served_reads_baseline_none_in_the_summary_and_the_report(served_dir_run):
  run = served_dir_run['run']
  assert run.returncode == 0, run.stdout + run.stderr
  assert 'Baseline: none (nothing served yet)' in run.stdout
  report_run = served_dir_run['report_run']
  assert report_run.returncode == 0, report_run.stdout + report_run.stderr
  soup = BeautifulSoup(served_dir_run['report'].read_text(), 'html.parser')
  assert soup.find(id='baseline').get_text() == 'Baseline: none (nothing served yet)'
  links = soup.find(id='links').get_text()
  assert 'baseline model' not in links
  assert 'candidate model' in links
