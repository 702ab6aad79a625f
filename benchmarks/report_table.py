"""Shared by the benchmarks: the machine and the command under each table; print it and keep it."""

import os
import pathlib
import platform
import sys


def header(columns: str) -> list[str]:
  """A markdown table's first two lines: the header row of `columns` (names separated by ' | ')
  and the separator row under it."""
  return [f'| {columns} |', '|' + ' --- |' * len(columns.split(' | '))]


def publish(
  lines: list[str], out: str | None, script: str, device: str = '', argv: list[str] | None = None
) -> int:
  """Appends the machine line (with `device`, e.g. ', no GPU') and the command that ran (the
  script's flags: `argv`, by default this process's), prints the markdown and writes it to `out`
  when given. Returns the exit status for `main`."""
  command = ' '.join(['python', f'benchmarks/{script}'] + (sys.argv[1:] if argv is None else argv))
  lines = lines + [
    f'Machine: {platform.machine()}, {os.cpu_count()} CPU cores{device}. Command: `{command}`'
  ]
  markdown = '\n'.join(lines)
  print(markdown)
  if out:
    pathlib.Path(out).write_text(markdown + '\n')
  return 0
