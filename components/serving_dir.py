"""A serving directory's version namespace: what counts as a published model, and staged pushes.

TF Serving's file system source loads, under a model's base directory, the subdirectories with a
purely numeric name (its default policy: the largest number). `DedupPusher` publishes a version in
two steps so that no reader ever sees a half-copied one:

  1. the SavedModel (with its warm-up requests) is copied to `<base>/.staging-<version>-<host>-<pid>`,
     a name TF Serving never takes for a version (not numeric);
  2. one rename makes it `<base>/<version>`, complete.

A push killed during step 1 leaves a staging dir, which every reader here ignores and the next push
removes (`clean_staging`). A numbered directory without `saved_model.pb` (copied by hand, or by a
Pusher that copied in place) is no model either: `complete_versions` lists only numbered
directories holding one, and `ServedModelBaseline`, the Pusher's de-duplication and `iouseg predict`
read versions through it.

Renaming a directory is one atomic step on a local or POSIX filesystem (the serving dir of a local
run, a mounted volume on Kubeflow); object stores (gs://, s3://) have no directory rename, and there
the version appears object by object.
"""

import os
import socket
import time

import tensorflow as tf

SAVED_MODEL_FILE = 'saved_model.pb'
STAGING_PREFIX = '.staging-'
# A staging dir of another host (whose process this one cannot look up) older than this is taken
# as left over by a killed push; a push of this size takes minutes, not hours.
STALE_STAGING_SECONDS = 6 * 3600


def _names(base_directory: str) -> list[str]:
  if not tf.io.gfile.isdir(base_directory):
    return []
  return [name.rstrip('/') for name in tf.io.gfile.listdir(base_directory)]


def complete_versions(base_directory: str) -> list[str]:
  """The version names under `base_directory` that hold a model (numeric, with `saved_model.pb`),
  oldest first."""
  return sorted(
    (
      name
      for name in _names(base_directory)
      if name.isdigit() and tf.io.gfile.exists(os.path.join(base_directory, name, SAVED_MODEL_FILE))
    ),
    key=int,
  )


def newest_complete_version(base_directory: str) -> str | None:
  """What TF Serving's default policy serves: the largest complete version, or None."""
  versions = complete_versions(base_directory)
  return versions[-1] if versions else None


def next_version(base_directory: str) -> str:
  """A new version number: the Unix time (as TFX's Pusher numbers versions), made larger than every
  numbered directory already there so that the new version is the one served."""
  taken = [int(name) for name in _names(base_directory) if name.isdigit()]
  return str(max([int(time.time())] + [number + 1 for number in taken]))


def staging_path(base_directory: str, version: str) -> str:
  """Where a push of `version` is copied before its rename, unique to this process."""
  return os.path.join(
    base_directory, f'{STAGING_PREFIX}{version}-{socket.gethostname()}-{os.getpid()}'
  )


def _process_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _left_over(base_directory: str, name: str) -> bool:
  """A staging dir no running push owns: this host's with a dead process, another host's when
  stale."""
  host_pid = name[len(STAGING_PREFIX) :].split('-', 1)[-1]
  host, _, pid = host_pid.rpartition('-')
  if host == socket.gethostname() and pid.isdigit():
    return int(pid) != os.getpid() and not _process_alive(int(pid))
  try:
    modified = tf.io.gfile.stat(os.path.join(base_directory, name)).mtime_nsec / 1e9
  except tf.errors.NotFoundError:
    return False
  return time.time() - modified > STALE_STAGING_SECONDS


def staging_dirs(base_directory: str) -> list[str]:
  return sorted(name for name in _names(base_directory) if name.startswith(STAGING_PREFIX))


def clean_staging(base_directory: str) -> list[str]:
  """Removes the staging dirs left by killed pushes (not those of a push still running); returns
  their names."""
  removed = []
  for name in staging_dirs(base_directory):
    if _left_over(base_directory, name):
      tf.io.gfile.rmtree(os.path.join(base_directory, name))
      removed.append(name)
  return removed
