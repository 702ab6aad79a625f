"""What a user sees while the pipeline runs locally: a line as each component starts and as it
finishes, and the third-party output (TFX, Beam, TensorFlow) in a log file instead of the terminal.

Progress: LocalDagRunner logs `Component <id> is running.` before it launches each node and
`Component <id> is finished.` after (absl logging, tfx/orchestration/local/local_dag_runner.py).
`ComponentProgress`, a logging filter, catches those two records, times the component between
them and, at the finish, reads the state of the node's new execution in ML Metadata, the launcher's
own record of what it did: COMPLETE is `executed`, CACHED is `cached`, and no new execution means
the launcher found its inputs missing (`skipped`).

Output: `third_party_output()` takes file descriptor 2 off the terminal (TensorFlow's C++ logs,
Beam workers, and `sys.stderr`: Python warnings, tracebacks, logging, every logger at INFO) and,
once the caller knows where, sends it to a log file (`to_log`) or back to the terminal
(`to_terminal`, `iouseg run --verbose`). Only stdout stays on the terminal: these progress lines,
the Trainer's Keras epoch lines, the run summary; errors are the caller's to show, on `terminal`.

Nothing here imports TensorFlow or TFX: whatever they log as they load must find fd 2 taken.
"""

import contextlib
import datetime
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import TextIO

_STARTED = re.compile(r'Component (\S+) is running\.$')
_FINISHED = re.compile(r'Component (\S+) is finished\.$')
_SKIPPED = re.compile(r'Skipping component (\S+)\.$')  # not in this partial run
_STATES = {'COMPLETE': 'executed', 'CACHED': 'cached'}
_NAME_WIDTH = 30
LOG_FORMAT = '%(asctime)s %(levelname)s %(name)s %(filename)s:%(lineno)d] %(message)s'


def log_path_for(pipeline_root: str) -> str:
  """PIPELINE_ROOT/logs/run-<local time>.log, a new file for each run."""
  stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
  return os.path.join(pipeline_root, 'logs', f'run-{stamp}.log')


def _node_executions(metadata_path: str, pipeline_name: str, node_id: str) -> list:
  """Every execution ML Metadata holds of `node_id` of the pipeline, any run."""
  from pipeline import metadata

  if not metadata.is_server(metadata_path) and not os.path.exists(metadata_path):
    return []
  from ml_metadata.metadata_store import metadata_store

  store = metadata_store.MetadataStore(metadata.connection_config(metadata_path, readonly=True))
  context = store.get_context_by_type_and_name('node', f'{pipeline_name}.{node_id}')
  return store.get_executions_by_context(context.id) if context else []


def _state_name(execution) -> str:
  from ml_metadata.proto import metadata_store_pb2

  state = metadata_store_pb2.Execution.State.Name(execution.last_known_state)
  return _STATES.get(state, state.lower())


class ComponentProgress(logging.Filter):
  """Prints `[ i/N] <node id> started` and `[ i/N] <node id> <state> <seconds> s` to `out` as the
  LocalDagRunner starts and finishes each node; `states` keeps each node's final state.

  A filter on TFX's `absl` logger rather than a handler: `attached` lowers that logger to INFO to
  see the runner's records, and the filter drops again every record below the logger's former
  level, so that handlers get what they got before.
  """

  def __init__(self, metadata_path: str, pipeline_name: str, total: int, out: TextIO):
    super().__init__()
    self._metadata_path = metadata_path
    self._pipeline_name = pipeline_name
    self._total = total
    self._out = out
    self._count = 0
    self._running = None  # (node id, monotonic start, execution ids known at the start)
    self._pass_level = logging.NOTSET
    self.states = {}

  def _print(self, node_id: str, text: str) -> None:
    width = len(str(self._total))
    print(
      f'[{self._count:>{width}}/{self._total}] {node_id:<{_NAME_WIDTH}} {text}',
      file=self._out,
      flush=True,
    )

  def _known_ids(self, node_id: str) -> set:
    return {e.id for e in _node_executions(self._metadata_path, self._pipeline_name, node_id)}

  def _start(self, node_id: str) -> None:
    self._count += 1
    self._running = (node_id, time.monotonic(), self._known_ids(node_id))
    self._print(node_id, 'started')

  def _finish(self, node_id: str, state: str | None = None) -> None:
    if self._running is None or self._running[0] != node_id:
      return  # a finish without its start: not the runner this was written for
    _, start, known = self._running
    self._running = None
    if state is None:
      new = [
        e
        for e in _node_executions(self._metadata_path, self._pipeline_name, node_id)
        if e.id not in known
      ]
      state = _state_name(max(new, key=lambda e: e.id)) if new else 'skipped'
    self.states[node_id] = state
    self._print(node_id, f'{state:<9} {time.monotonic() - start:6.1f} s')

  def _skip(self, node_id: str) -> None:
    self._count += 1
    self.states[node_id] = 'skipped'
    self._print(node_id, 'skipped (not in this partial run)')

  def filter(self, record: logging.LogRecord) -> bool:
    try:
      message = record.getMessage()
      for pattern, act in (
        (_STARTED, self._start),
        (_FINISHED, self._finish),
        (_SKIPPED, self._skip),
      ):
        match = pattern.match(message)
        if match:
          act(match.group(1))
          break
    except Exception as e:
      print(f'(progress display failed: {e!r})', file=self._out)  # never stops the run
    return record.levelno >= self._pass_level

  def stopped(self, state: str = 'failed') -> str | None:
    """Prints the running node as `state`; returns its id, None when no node was running."""
    if self._running is None:
      return None
    node_id = self._running[0]
    self._finish(node_id, state)
    return node_id

  @contextlib.contextmanager
  def attached(self) -> Iterator['ComponentProgress']:
    """Watches the runner's records for the duration; a node running when an exception leaves is
    printed as failed (interrupted on Ctrl-C)."""
    from absl import logging as absl_logging

    absl_logger = logging.getLogger('absl')
    old_level, old_verbosity = absl_logger.level, absl_logging.get_verbosity()
    self._pass_level = absl_logger.getEffectiveLevel()
    # Through absl's verbosity, not the logger's level alone: TensorFlow mutes absl for a moment
    # while saving a model and restores the verbosity, not the level.
    absl_logging.set_verbosity(max(old_verbosity, absl_logging.INFO))
    absl_logger.addFilter(self)
    try:
      yield self
    except KeyboardInterrupt:
      self.stopped('interrupted')
      raise
    except BaseException:
      self.stopped('failed')
      raise
    finally:
      absl_logger.removeFilter(self)
      absl_logging.set_verbosity(old_verbosity)
      absl_logger.setLevel(old_level)


class ThirdPartyOutput:
  """File descriptor 2 kept off the terminal: in a spool at first, until `to_log` (the spool, then
  everything after, goes to the log file) or `to_terminal` (the spool is written to the terminal,
  which is fd 2 again). `terminal` is the terminal's stderr throughout, for what a user must see."""

  def __init__(self):
    sys.stderr.flush()
    self._saved_fd = os.dup(2)
    self._spool = tempfile.TemporaryFile()
    os.dup2(self._spool.fileno(), 2)
    self.terminal = os.fdopen(os.dup(self._saved_fd), 'w', buffering=1)
    self.log_path = None

  def _empty_spool_into(self, fd: int) -> None:
    if self._spool is None:
      return
    sys.stderr.flush()
    self._spool.seek(0)
    with os.fdopen(os.dup(fd), 'wb') as out:
      shutil.copyfileobj(self._spool, out)
    self._spool.close()
    self._spool = None

  def to_log(self, log_path: str) -> None:
    """From now on fd 2 appends to `log_path` (created with its folder), after what was spooled."""
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
      self._empty_spool_into(log_fd)
      os.dup2(log_fd, 2)
    finally:
      os.close(log_fd)
    self.log_path = log_path

  def to_terminal(self) -> None:
    """fd 2 is the terminal again, what was spooled written to it first."""
    self._empty_spool_into(self._saved_fd)
    sys.stderr.flush()
    os.dup2(self._saved_fd, 2)

  def close(self) -> None:
    self.to_terminal()
    os.close(self._saved_fd)
    self.terminal.close()


@contextlib.contextmanager
def third_party_output() -> Iterator[ThirdPartyOutput]:
  """Within: fd 2 (so also `sys.stderr`) is a `ThirdPartyOutput`, to be sent `to_log` or
  `to_terminal`, and every Python logger logs at INFO to it. Whatever was still spooled at the end
  goes to the terminal (an argument error, say): nothing written to stderr is lost."""
  root = logging.getLogger()
  old_handlers, old_level = root.handlers[:], root.level
  output = ThirdPartyOutput()
  try:
    # Configured before TensorFlow is imported, so that it adds no handler of its own (TensorFlow's
    # logger does when the root logger has none) and absl no `basicConfig` either.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    yield output
  finally:
    root.handlers, root.level = old_handlers, old_level
    output.close()
