"""A full disk and a read-only folder while `iouseg run` writes: the run fails with one line naming
the path and what was being written, publishes nothing, and the next run, once space is freed or
the folder writable again, succeeds and takes from the cache what had completed.

The pipeline root and the serving dir are small tmpfs mounts (root may mount them in this
container; the tests are skipped, with the reason, where it may not: `chmod` does not stop root,
a read-only mount does). One chain of `iouseg run`s of one command, each a step further:

1. the pipeline root filled up as Transform starts: Transform fails;
2. space freed, filled again as the Trainer starts: the Trainer fails (its backup or its export);
3. space freed; the serving dir (64 KiB) too small for the model: the Pusher fails;
4. the serving dir large enough but remounted read-only as the Pusher starts: the Pusher fails;
5. writable again: the run succeeds, pushes one complete version.

The fill comes when the progress line `[ i/N] <component> started` appears, before that
component's executor writes anything. A read-only pipeline root or serving dir given at the start
is refused before anything runs (exit status 2), like every other bad flag.
"""

import errno
import os
import re
import subprocess

import pytest

from iouseg import cli

from helpers import iouseg_run_argv, run_watched, tiny_model_flags, tiny_run_args, torn_outputs

NAME = 'disk_faults'
ROOT_SIZE, SMALL_SERVING, SERVING_SIZE = '32m', '64k', '32m'


def _mount(path, *options):
  path.mkdir(exist_ok=True)
  done = subprocess.run(
    ['mount', '-t', 'tmpfs', '-o', ','.join(options), 'tmpfs', str(path)],
    capture_output=True,
    text=True,
  )
  if done.returncode:
    pytest.skip(f'cannot mount a tmpfs here ({done.stderr.strip()}): the disk faults need one')


def _remount(path, *options):
  subprocess.run(['mount', '-o', ','.join(('remount', *options)), str(path)], check=True)


def _fill(folder) -> None:
  """Writes zeros to FOLDER/filler until the filesystem is full."""
  block = bytes(1 << 16)
  with open(os.path.join(folder, 'filler'), 'wb', buffering=0) as f:
    try:
      while True:
        f.write(block)
    except OSError as e:
      assert e.errno == errno.ENOSPC, e


def _when_started(component, act):
  """`run_watched`'s reaction: `act()` once, as `component`'s progress line says it started."""
  started = re.compile(rf'^\[ ?\d+/\d+\] {component} +started$')

  def react(line: str) -> bool:
    if started.match(line):
      act()
    return False

  return react


@pytest.fixture(scope='module')
def chain(tiny_demo_data, tmp_path_factory):
  base = tmp_path_factory.mktemp('disk_faults')
  root, serving = base / 'root', base / 'serving'
  _mount(root, f'size={ROOT_SIZE}')
  _mount(serving, f'size={SMALL_SERVING}')
  argv = iouseg_run_argv(base, tiny_demo_data, NAME, train_steps=2) + tiny_model_flags(epochs=1)
  metadata = str(base / 'metadata.sqlite')
  runs = {}

  def record(step, reaction):
    run = run_watched(argv, reaction)
    runs[step] = dict(run, torn=torn_outputs(metadata, str(serving)), served=os.listdir(serving))
    (base / f'{step}.stderr').write_text(run['stderr'])  # for a failure's reader
    (root / 'filler').unlink(missing_ok=True)  # the space freed

  try:
    record('transform', _when_started('Transform', lambda: _fill(root)))
    record('trainer', _when_started('Trainer', lambda: _fill(root)))
    record('push_full', lambda line: False)
    _remount(serving, f'size={SERVING_SIZE}')
    record('push_read_only', _when_started('Pusher', lambda: _remount(serving, 'ro')))
    _remount(serving, 'rw')
    record('final', lambda line: False)
    yield {'base': base, 'runs': runs, 'metadata': metadata}
  finally:
    for mount in (root, serving):
      subprocess.run(['umount', str(mount)], capture_output=True)


def _error_line(run) -> str:
  """The one line of the error; the line after it only says where the log is."""
  lines = run['stderr'].strip().splitlines()
  assert run['rc'] == 1 and len(lines) == 2, run['stderr'][-3000:]
  assert lines[0].startswith('Error: ') and lines[1].startswith('Log (TFX, Beam, TensorFlow; ')
  return lines[0]


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize(
  'step,component,written',
  [
    ('transform', 'Transform', 'root/Transform/'),
    ('trainer', 'Trainer', 'root/Trainer/'),
    ('push_full', 'Pusher', 'serving/'),
    ('push_read_only', 'Pusher', 'serving/'),
  ],
)
def test_the_run_fails_in_one_line_naming_what_it_wrote(chain, step, component, written):
  run = chain['runs'][step]
  line = _error_line(run)
  assert re.search(rf'^\[ ?\d+/\d+\] {component} +failed', run['stdout'], re.MULTILINE)
  assert str(chain['base'] / written) in line, line
  reason = 'Read-only file system' if step == 'push_read_only' else 'No space left on device'
  assert reason in line, line


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize('step', ['transform', 'trainer', 'push_full', 'push_read_only'])
def test_nothing_is_published(chain, step):
  run = chain['runs'][step]
  assert run['served'] == [], run['served']  # no version, no staging dir left
  assert run['torn'] == []
  assert 'Blessed: yes' not in run['stdout'] and 'Pushed to:' not in run['stdout']


@pytest.mark.parametrize('flag', ['--serving-dir', '--pipeline-root'])
def test_a_read_only_folder_given_is_refused_before_anything_runs(
  flag, tiny_demo_data, tmp_path, capfd
):
  """In this process (the refusal comes before TensorFlow loads): exit status 2, one line, and
  nothing written anywhere the command line names."""
  read_only = tmp_path / 'read_only'
  _mount(read_only, 'size=64k', 'ro')
  try:
    argv = tiny_run_args(tmp_path / 'run', tiny_demo_data)
    argv[argv.index(flag) + 1] = str(read_only / 'models')
    status = cli.main(argv)
  finally:
    subprocess.run(['umount', str(read_only)], check=True)
  _, err = capfd.readouterr()
  assert status == 2
  assert err.startswith(f'iouseg run: error: {flag} ') and 'read-only' in err, err
  assert len(err.strip().splitlines()) == 1, err
  assert sorted(os.listdir(tmp_path)) == ['read_only'] and os.listdir(read_only) == []


@pytest.mark.e2e
@pytest.mark.slow
def test_the_run_after_space_is_freed_succeeds_from_the_cache(chain):
  final = chain['runs']['final']
  assert final['rc'] == 0, final['stderr'][-3000:]
  assert 'Blessed: yes' in final['stdout'].splitlines()
  # The Evaluator runs again: its baseline, the latest blessed model, is now this model.
  for component in ('ImportExampleGen', 'Transform', 'Trainer'):
    assert re.search(rf'^\[ ?\d+/\d+\] {component} +cached', final['stdout'], re.MULTILINE)
  assert re.search(r'^\[ ?\d+/\d+\] Pusher +executed', final['stdout'], re.MULTILINE)
  versions = final['served']
  assert len(versions) == 1 and versions[0].isdigit(), versions
  assert os.path.exists(chain['base'] / 'serving' / versions[0] / 'saved_model.pb')
  assert final['torn'] == []
