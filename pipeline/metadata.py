"""Where ML Metadata lives: `--metadata` as an SQLite file, or a MySQL/MariaDB database on a server.

    runs/metadata.sqlite                         an SQLite file (made with its folder if missing)
    mysql://USER@HOST:PORT/DB                    a database on a server (port 3306 if left out)
    mysql://USER@localhost/DB?socket=PATH        the same through the server's local socket

A server URL holds no password: the command line is visible to every user of the machine (`ps`)
and ends up in shell histories. The password is the content of the file named by
`--metadata-password-file` (which adds `password_file=PATH` to the URL, so every reader of the
store finds it), else the environment variable IOUSEG_METADATA_PASSWORD; neither set: no password.
TFX logs its whole connection config at INFO, password included (LocalDagRunner), so runs log
through `passwords_redacted`. The database is created on first use (the user needs the CREATE
privilege on it), as MLMD does.

Nothing here imports TFX or TensorFlow: the command line is checked before they load.
"""

import contextlib
import dataclasses
import logging
import os
import re
import socket
import time
import urllib.parse
from collections.abc import Iterator

PASSWORD_ENV = 'IOUSEG_METADATA_PASSWORD'
SCHEME = 'mysql'
_DEFAULT_PORT = 3306
_FORMS = 'mysql://USER@HOST:PORT/DB or mysql://USER@localhost/DB?socket=PATH'
_QUERY_KEYS = ('socket', 'password_file')
# MLMD's error when runs connect at once to an empty database and race to create its tables.
_SCHEMA_RACE = 'concurrent connection to the empty database'
_SCHEMA_RETRIES = 5
# A password in a logged text-format proto (`password: "..."`, quotes escaped inside).
_LOGGED_PASSWORD = re.compile(r'(password\s*:\s*)"(?:[^"\\]|\\.)*"')


@dataclasses.dataclass(frozen=True)
class Server:
  """A `mysql://` --metadata, parsed."""

  url: str
  user: str
  database: str
  host: str | None  # None with a socket: MLMD takes exactly one of the two
  port: int
  socket: str | None
  password_file: str | None

  @property
  def where(self) -> str:
    """What a user would check: host:port, or the socket's path."""
    return f'socket {self.socket}' if self.socket else f'{self.host}:{self.port}'

  def password(self) -> str:
    if self.password_file is None:
      return os.environ.get(PASSWORD_ENV, '')
    try:
      with open(self.password_file, encoding='utf-8') as f:
        return f.read().rstrip('\r\n')
    except OSError as e:
      raise ValueError(
        f'--metadata-password-file {self.password_file}: cannot read it ({e.strerror})'
      ) from None


def is_server(metadata: str) -> bool:
  return '://' in metadata


def parse(metadata: str) -> Server | None:
  """The server of a `mysql://` URL, None for an SQLite path; ValueError naming --metadata for
  anything else."""
  if not is_server(metadata):
    return None
  url = urllib.parse.urlsplit(metadata)

  def refused(problem: str) -> ValueError:
    return ValueError(f'--metadata {metadata}: {problem}; expected an SQLite file, {_FORMS}')

  if url.scheme != SCHEME:
    raise refused(f'{url.scheme}:// is not a metadata store')
  if url.password is not None:
    raise ValueError(
      f'--metadata: no password in the URL (the command line is visible to others); set '
      f'{PASSWORD_ENV} or give --metadata-password-file'
    )
  try:
    port = url.port or _DEFAULT_PORT
  except ValueError:
    raise refused('the port must be a number from 1 to 65535') from None
  query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
  unknown = sorted(set(query) - set(_QUERY_KEYS))
  database = url.path.removeprefix('/')
  if not url.username or not url.hostname:
    raise refused('name the user and the host')
  if not database or '/' in database:
    raise refused('name one database after the host')
  if unknown or url.fragment or any(len(values) > 1 for values in query.values()):
    raise refused(f'only {" and ".join(_QUERY_KEYS)} may follow "?", once each')
  sock = query.get('socket', [None])[0]
  if sock is not None and (url.hostname != 'localhost' or url.port is not None):
    raise refused('a socket is on this machine: write mysql://USER@localhost/DB?socket=PATH')
  return Server(
    url=metadata,
    user=urllib.parse.unquote(url.username),
    database=database,
    host=None if sock else url.hostname,
    port=port,
    socket=sock,
    password_file=query.get('password_file', [None])[0],
  )


def with_password_file(metadata: str, password_file: str | None) -> str:
  """`metadata` with --metadata-password-file in its URL, where every reader of the store finds
  it; ValueError naming the flag when it cannot be used."""
  server = parse(metadata)
  if password_file is None:
    return metadata
  if server is None:
    raise ValueError(
      f'--metadata-password-file is for a database server; --metadata {metadata} is an SQLite file'
    )
  if server.password_file is not None:
    raise ValueError('--metadata-password-file: the --metadata URL names a password_file already')
  if not os.path.isfile(password_file):
    raise ValueError(f'--metadata-password-file {password_file}: no such file')
  query = urllib.parse.urlencode({'password_file': os.path.abspath(password_file)}, safe='/')
  return metadata + ('&' if '?' in metadata else '?') + query


def connection_config(metadata: str, readonly: bool = False):
  """MLMD's ConnectionConfig of --metadata: MySQL for a server (its database created on first
  use), else SQLite, READONLY for a reader that must not create the file."""
  from ml_metadata.proto import metadata_store_pb2

  server = parse(metadata)
  if server is None:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata
    config.sqlite.connection_mode = (
      metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
      if readonly
      else metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    )
    return config
  # What TFX's `mysql_metadata_connection_config` builds, with MLMD's socket form besides.
  address = (
    {'socket': server.socket} if server.socket else {'host': server.host, 'port': server.port}
  )
  return metadata_store_pb2.ConnectionConfig(
    mysql=metadata_store_pb2.MySQLDatabaseConfig(
      **address, database=server.database, user=server.user, password=server.password()
    )
  )


def _reachable(server: Server) -> str | None:
  """Why nothing answers at the server's address, or None when something does."""
  try:
    if server.socket:
      with socket.socket(socket.AF_UNIX) as unix:
        unix.settimeout(10)
        unix.connect(server.socket)
    else:
      socket.create_connection((server.host, server.port), timeout=10).close()
  except OSError as e:
    return e.strerror or type(e).__name__
  return None


@contextlib.contextmanager
def _stderr_muted() -> Iterator[None]:
  # MLMD's C++ logs a paragraph on fd 2 when a connection fails; the caller says it in one line.
  saved = os.dup(2)
  try:
    with open(os.devnull, 'wb') as devnull:
      os.dup2(devnull.fileno(), 2)
      yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)


def check_server(metadata: str) -> None:
  """For a server --metadata: ValueError, one line naming host:port (or the socket), unless MLMD
  connects to its database (creating the database and MLMD's tables when missing). An SQLite path
  is not looked at."""
  server = parse(metadata)
  if server is None:
    return
  why = _reachable(server)
  if why:
    raise ValueError(
      f'--metadata {server.url}: no database server answers at {server.where} ({why})'
    )
  from ml_metadata.metadata_store import metadata_store

  config = connection_config(metadata)
  for attempt in range(_SCHEMA_RETRIES):
    try:
      with _stderr_muted():
        metadata_store.MetadataStore(config)
      return
    except Exception as e:  # MLMD raises RuntimeError with its C++ status text
      error = str(e)
    if _SCHEMA_RACE not in error:
      break
    time.sleep(1 + attempt)  # another run is creating MLMD's tables; MLMD asks to connect again
  if 'mysql_real_connect failed' in error:  # all MLMD says of a refused login
    raise ValueError(
      f'--metadata {server.url}: the server at {server.where} refused user {server.user!r} on '
      f'database {server.database!r}: a wrong password ({PASSWORD_ENV} or '
      '--metadata-password-file), or no privilege to create or use the database'
    )
  raise ValueError(
    f'--metadata {server.url}: ML Metadata cannot use database {server.database!r} at '
    f'{server.where}: {error.splitlines()[0][:300]}'
  )


class _RedactPasswords(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    if 'password' in message:
      record.msg, record.args = _LOGGED_PASSWORD.sub(r'\1"<redacted>"', message), None
    return True


@contextlib.contextmanager
def passwords_redacted() -> Iterator[None]:
  """Within: what TFX and MLMD log through absl (the connection config, at INFO and DEBUG) has
  `password: "<redacted>"` for the password."""
  absl_logger = logging.getLogger('absl')
  redact = _RedactPasswords()
  absl_logger.addFilter(redact)
  try:
    yield
  finally:
    absl_logger.removeFilter(redact)


def add_password_file_argument(parser) -> None:
  """--metadata-password-file, on a parser or an argument group."""
  parser.add_argument(
    '--metadata-password-file',
    metavar='FILE',
    help=f'the password of a server --metadata, read from FILE (else {PASSWORD_ENV}); never put '
    'on the command line (docs/metadata.md)',
  )
