"""ML Metadata on a database server, and several pipelines sharing one store at once.

The server is a private MariaDB (Debian's package; `make test` installs it): a data dir made by
mariadb-install-db under the test's temporary folder, `mariadbd` on a free 127.0.0.1 port and a
socket beside its data, and a user with a random password (grant tables on: the password is
checked). It is skipped with a reason when /usr/sbin/mariadbd is missing, except in CI (`CI=true`),
where it must run.

Four `iouseg run`s start at once on one server database, four more on one SQLite file: each with
its own data, pipeline name, pipeline root and serving dir, as users sharing a store run them. Each
must finish, print its summary, and its pushed model must trace in ML Metadata to its own Trainer
and its own data (docs/metadata.md gives the wall times). The password travels by file and by
environment variable, never on a command line, and is in no file a run writes nor in the database.
"""

import getpass
import os
import re
import secrets
import socket
import subprocess
import sys
import time

import pytest

from iouseg import cli, demo_data, mlmd_store

from helpers import PIPELINE_COMPONENTS, iouseg_run_argv, tiny_model_flags, tiny_run_args

MARIADBD = '/usr/sbin/mariadbd'
USER = 'iouseg'
RUNS = 4  # pipelines at once on one store
# The tiniest run the pipeline takes: 8 train / 4 eval records of 32 px, 2 steps in one epoch,
# no flips (on 8 records a shape may sit on one side, which the lateral-class guard refuses).
TINY_RUN = dict(train_count=8, eval_count=4, size=32)
needs_server = pytest.mark.skipif(
  not os.path.exists(MARIADBD) and os.environ.get('CI') != 'true',
  reason=f'{MARIADBD} missing (apt-get install -y mariadb-server); CI always runs this',
)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


class MariaDB:
  """A private server: its address, its user's password, and SQL as its root user."""

  def __init__(self, base):
    self.data = base / 'data'
    self.socket = str(base / 'mysqld.sock')
    self.port = _free_port()
    self.password = secrets.token_hex(16)
    self.process = None

  def url(self, database: str) -> str:
    return f'mysql://{USER}@127.0.0.1:{self.port}/{database}'

  def socket_url(self, database: str) -> str:
    return f'mysql://{USER}@localhost/{database}?socket={self.socket}'

  def client(self, program: str, *args: str) -> str:
    """`mariadb` or `mariadb-dump` as the server's root (no password: the data dir's own)."""
    return subprocess.run(
      [program, '--no-defaults', f'--socket={self.socket}', '--user=root', *args],
      check=True,
      capture_output=True,
      text=True,
    ).stdout

  def start(self, log) -> None:
    subprocess.run(
      [
        'mariadb-install-db',
        '--no-defaults',
        f'--datadir={self.data}',
        f'--user={getpass.getuser()}',
        '--auth-root-authentication-method=normal',
        '--skip-test-db',
      ],
      check=True,
      capture_output=True,
    )
    self.out = open(f'{log}.out', 'w')  # what mariadbd says before it opens its log
    self.process = subprocess.Popen(
      [
        MARIADBD,
        '--no-defaults',
        f'--datadir={self.data}',
        f'--socket={self.socket}',
        f'--port={self.port}',
        '--bind-address=127.0.0.1',
        f'--user={getpass.getuser()}',  # needed to start as root; ignored otherwise
        '--skip-name-resolve',
        '--innodb-buffer-pool-size=32M',
        f'--log-error={log}',
      ],
      stdout=self.out,
      stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while subprocess.run(
      ['mariadb-admin', '--no-defaults', f'--socket={self.socket}', '--user=root', 'ping'],
      capture_output=True,
    ).returncode:
      assert self.process.poll() is None and time.monotonic() < deadline, open(log).read()
      time.sleep(0.5)
    self.client(
      'mariadb',
      '-e',
      f"CREATE USER '{USER}'@'%' IDENTIFIED BY '{self.password}'; "
      f"GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'%'",
    )

  def stop(self) -> None:
    if self.process is not None:
      self.process.terminate()
      self.process.wait(timeout=120)
      self.out.close()


@pytest.fixture(scope='module')
def mariadb(tmp_path_factory):
  base = tmp_path_factory.mktemp('mariadb')
  server = MariaDB(base)
  try:
    server.start(base / 'error.log')
    yield server
  finally:
    server.stop()


def _env(password: str | None = None) -> dict:
  env = {k: v for k, v in os.environ.items() if k != 'IOUSEG_METADATA_PASSWORD'}
  return env if password is None else {**env, 'IOUSEG_METADATA_PASSWORD': password}


def _run_at_once(tmp_path_factory, label: str, metadata_flags) -> list[dict]:
  """`RUNS` tiny `iouseg run`s started together, run i with the flags and the environment that
  `metadata_flags(i, base)` returns; each with its own data (a different seed), pipeline name,
  root and serving dir. Returns, per run: its name, paths, exit status and output."""
  runs = []
  start = time.monotonic()
  for i in range(RUNS):
    base = tmp_path_factory.mktemp(f'{label}{i}')
    data = base / 'data'
    demo_data.write_demo_data(str(data), seed=i, **TINY_RUN)
    flags, env = metadata_flags(i, base)
    argv = iouseg_run_argv(base, data, f'{label}{i}', train_steps=2)
    out = open(base / 'stdout', 'w+')  # read back once the run ends
    runs.append(
      dict(
        name=f'{label}{i}',
        base=base,
        data=str(data),
        out=out,
        process=subprocess.Popen(
          argv + tiny_model_flags(epochs=1) + ['--no-horizontal-flip'] + flags,
          stdout=out,
          stderr=subprocess.STDOUT,
          env=env,
        ),
      )
    )
  for run in runs:
    run['returncode'] = run.pop('process').wait(timeout=1800)
    with run.pop('out') as out:
      out.seek(0)
      run['printed'] = out.read()
  print(f'{label}: {RUNS} runs at once, {time.monotonic() - start:.0f} s wall')  # docs/metadata.md
  return runs


@pytest.fixture(scope='module')
def server_runs(mariadb, tmp_path_factory):
  """On one server database: runs 0 and 1 read the password from --metadata-password-file, 2 and
  3 from the environment; run 3 connects through the socket."""
  database = 'shared'

  def flags(i, base):
    url = mariadb.socket_url(database) if i == 3 else mariadb.url(database)
    if i >= 2:
      return ['--metadata', url], _env(mariadb.password)
    (base / 'password').write_text(mariadb.password + '\n')
    return ['--metadata', url, '--metadata-password-file', str(base / 'password')], _env()

  return database, _run_at_once(tmp_path_factory, 'server', flags)


@pytest.fixture(scope='module')
def sqlite_runs(tmp_path_factory):
  store = tmp_path_factory.mktemp('sqlite') / 'shared.sqlite'
  return str(store), _run_at_once(
    tmp_path_factory, 'sqlite', lambda i, base: (['--metadata', str(store)], _env())
  )


def _producer(store, artifact):
  """The execution that wrote `artifact`, and its node context's name (`<pipeline>.<node>`)."""
  from ml_metadata.proto import metadata_store_pb2

  [event] = [
    e
    for e in store.get_events_by_artifact_ids([artifact.id])
    if e.type == metadata_store_pb2.Event.OUTPUT
  ]
  [execution] = store.get_executions_by_id([event.execution_id])
  nodes = [
    c.name
    for c in store.get_contexts_by_execution(execution.id)
    if store.get_context_types_by_id([c.type_id])[0].name == 'node'
  ]
  return execution, nodes


def _assert_lineage(metadata: str, run: dict) -> None:
  """The run's pushed model, in ML Metadata: pushed to its own serving dir, trained by its own
  Trainer on examples its own RecordValidator took from its own ImportExampleGen, which read its
  own data root; each of these in the run's own pipeline run."""
  store = mlmd_store.open_store(metadata)
  name = run['name']
  run_context = mlmd_store.latest_run_context(store, metadata, name)
  in_run = {e.id for e in store.get_executions_by_context(run_context.id)}
  [pusher] = [
    e for e in store.get_executions_by_id(in_run) if mlmd_store.node_id(store, e) == 'Pusher'
  ]
  [pushed] = mlmd_store.artifacts(store, pusher, mlmd_store.OUTPUT_EVENTS)['pushed_model']
  destination = pushed.custom_properties['pushed_destination'].string_value
  assert destination.startswith(str(run['base'] / 'serving') + os.sep), destination
  assert os.path.isfile(os.path.join(destination, 'saved_model.pb'))
  execution = pusher
  for key, node in (
    ('model', 'Trainer'),
    ('examples', 'RecordValidator'),
    ('examples', 'ImportExampleGen'),
  ):
    [artifact] = mlmd_store.artifacts(store, execution, mlmd_store.INPUT_EVENTS)[key]
    execution, nodes = _producer(store, artifact)
    assert nodes == [f'{name}.{node}'], (key, nodes)
    assert execution.id in in_run, (name, node)
  assert execution.custom_properties['input_base'].string_value == run['data']


def _assert_finished(run: dict) -> None:
  """The run succeeded and its summary, read back from the store, says each component executed
  and the model was blessed and pushed to the run's own serving dir."""
  printed = run['printed']
  assert run['returncode'] == 0, printed[-3000:]
  for component in PIPELINE_COMPONENTS:
    assert re.search(rf'^  {component}\s+executed$', printed, re.MULTILINE), (component, printed)
  assert 'Blessed: yes' in printed, printed[-3000:]
  assert f'Pushed to: {run["base"] / "serving"}{os.sep}' in printed


@needs_server
@pytest.mark.e2e
def test_four_runs_at_once_on_one_server_database_each_with_its_own_lineage(
  mariadb, server_runs, monkeypatch
):
  monkeypatch.setenv('IOUSEG_METADATA_PASSWORD', mariadb.password)  # this process reads the store
  database, runs = server_runs
  for run in runs:
    _assert_finished(run)
    _assert_lineage(mariadb.url(database), run)


@needs_server
@pytest.mark.e2e
def test_iouseg_report_reads_a_run_on_the_server_through_its_socket(
  mariadb, server_runs, monkeypatch, capsys
):
  database, runs = server_runs
  run = runs[1]  # a TCP run, read back through the socket with the password from the environment
  monkeypatch.setenv('IOUSEG_METADATA_PASSWORD', mariadb.password)
  report = run['base'] / 'report.html'
  metadata = mariadb.socket_url(database)
  assert (
    cli.main(
      ['report', '--metadata', metadata, '--pipeline-name', run['name'], '--output', str(report)]
    )
    == 0
  )
  assert capsys.readouterr().out.startswith(f'{report}: blessed, 4 of 4 eval images')
  assert '<html' in report.read_text()


@needs_server
@pytest.mark.e2e
def test_the_password_is_in_no_file_a_run_wrote_nor_in_the_database(mariadb, server_runs):
  database, runs = server_runs
  secret = mariadb.password
  for run in runs:
    for path in run['base'].rglob('*'):
      if path.is_file() and path.name != 'password':
        assert secret.encode() not in path.read_bytes(), path
    # TFX logs its connection config at INFO: there, the password reads as redacted.
    [log] = (run['base'] / 'root' / 'logs').glob('run-*.log')
    assert 'password: "<redacted>"' in log.read_text()
  assert secret not in mariadb.client('mariadb-dump', database)


@pytest.mark.e2e
def test_four_runs_at_once_on_one_sqlite_file_each_with_its_own_lineage(sqlite_runs):
  store, runs = sqlite_runs
  for run in runs:
    _assert_finished(run)
    _assert_lineage(store, run)


def _assert_one_line(err: str, prog: str, *expected: str) -> str:
  lines = err.strip().splitlines()
  assert len(lines) == 1 and 'Traceback' not in err, err
  assert lines[0].startswith(f'{prog}: error: '), lines[0]
  for text in expected:
    assert text in lines[0], (text, lines[0])
  return lines[0]


BAD_STORES = [
  (['--metadata', 'postgresql://u@db.example.com/mlmd'], ['--metadata postgresql://', 'mysql://']),
  (['--metadata', 'mysql://u@db.example.com:99999/mlmd'], ['--metadata', 'port', '65535']),
  (['--metadata', 'mysql://db.example.com/mlmd'], ['--metadata', 'name the user']),
  (['--metadata', 'mysql://u@db.example.com/'], ['--metadata', 'database']),
  (['--metadata', 'mysql://u@db.example.com/mlmd?ssl=1'], ['--metadata', 'socket']),
  (
    ['--metadata', 'mysql://u:hunter2@db.example.com/mlmd'],
    ['--metadata', 'no password in the URL'],
  ),
  (['--metadata-password-file', '/nonexistent'], ['--metadata-password-file', 'SQLite file']),
  (
    ['--metadata', 'mysql://u@db.example.com/mlmd', '--metadata-password-file', '/nonexistent'],
    ['--metadata-password-file /nonexistent', 'no such file'],
  ),
]


@pytest.mark.parametrize('flags,expected', BAD_STORES, ids=lambda v: ' '.join(v)[:50])
def test_a_bad_store_is_refused_in_one_line_before_anything_runs(
  flags, expected, tiny_demo_data, tmp_path, capfd
):
  returncode = cli.main(tiny_run_args(tmp_path, tiny_demo_data, *flags))
  out, err = capfd.readouterr()
  assert (returncode, out) == (2, '')
  line = _assert_one_line(err, 'iouseg run', *expected)
  assert 'hunter2' not in line
  assert os.listdir(tmp_path) == []  # no pipeline root, log or SQLite file


def _iouseg(*args: str, env: dict) -> tuple[int, str, str]:
  """The real command in a subprocess: what a user sees on the terminal, stdout and stderr."""
  done = subprocess.run(
    [sys.executable, '-m', 'iouseg.cli', *args], capture_output=True, text=True, env=env
  )
  return done.returncode, done.stdout, done.stderr


def test_an_unreachable_server_is_one_line_naming_host_and_port(tiny_demo_data, tmp_path):
  port = _free_port()  # nothing listens there
  returncode, out, err = _iouseg(
    *tiny_run_args(tmp_path, tiny_demo_data, '--metadata', f'mysql://u@127.0.0.1:{port}/mlmd'),
    env=_env(),
  )
  assert (returncode, out) == (2, '')
  _assert_one_line(err, 'iouseg run', f'no database server answers at 127.0.0.1:{port}')
  assert os.listdir(tmp_path) == []


@needs_server
def test_a_wrong_password_is_one_line_naming_the_server_and_the_user(
  mariadb, tiny_demo_data, tmp_path
):
  for args in (
    tiny_run_args(tmp_path, tiny_demo_data, '--metadata', mariadb.url('refused')),
    ['report', '--metadata', mariadb.url('refused'), '--output', str(tmp_path / 'r.html')],
  ):
    returncode, out, err = _iouseg(*args, env=_env('not-' + mariadb.password))
    assert (returncode, out) == (2, '')
    _assert_one_line(
      err,
      f'iouseg {args[0]}',
      f'the server at 127.0.0.1:{mariadb.port} refused user {USER!r}',
      'IOUSEG_METADATA_PASSWORD',
    )
  assert os.listdir(tmp_path) == []


def test_compile_kubeflow_refuses_a_metadata_store_and_no_password_reaches_the_spec(
  tiny_demo_data, tmp_path, capfd, monkeypatch
):
  secret = secrets.token_hex(16)
  monkeypatch.setenv('IOUSEG_METADATA_PASSWORD', secret)
  (tmp_path / 'password').write_text(secret)
  compile_args = [
    'compile-kubeflow',
    '--image',
    'ghcr.io/example/iouseg:test',
    '--data-root',
    str(tiny_demo_data),
    '--pipeline-root',
    'gs://bucket/root',
    '--serving-dir',
    'gs://bucket/serving',
    *tiny_model_flags(),
  ]
  for flags in (
    ['--metadata', 'mysql://u@db.example.com/mlmd'],
    ['--metadata-password-file', str(tmp_path / 'password')],
  ):
    assert cli.main([*compile_args, *flags, '--output', str(tmp_path / 'refused.yaml')]) == 2
    _assert_one_line(
      capfd.readouterr().err, 'iouseg compile-kubeflow', flags[0], "KFP's own ML Metadata store"
    )
  assert not (tmp_path / 'refused.yaml').exists()
  spec = tmp_path / 'pipeline.yaml'
  assert cli.main([*compile_args, '--output', str(spec)]) == 0
  assert secret not in spec.read_text()
