"""Imports flow one way: transform (record format) <- trainer <- components <- pipeline <- kubeflow
<- the iouseg CLI. Read from the source itself (every import statement, function-level ones too), so
an upward import or a cycle fails here the day it is written."""

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
# Bottom first: a package may import itself and the packages before it, never one after it.
LAYERS = ('transform', 'trainer', 'components', 'pipeline', 'kubeflow', 'iouseg')


def _module_name(path: pathlib.Path, root: pathlib.Path) -> str:
  parts = list(path.relative_to(root).with_suffix('').parts)
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _imported_names(path: pathlib.Path, module: str):
  """(line, dotted name) of every import in the file that names one of the LAYERS: a module, or for
  `from a import x`, 'a.x' (a module or a name in module a)."""
  package = module if path.name == '__init__.py' else module.rpartition('.')[0]
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:  # relative import: resolve against the importing package
        anchor = package.split('.')[: len(package.split('.')) - node.level + 1]
        base = '.'.join(anchor + ([base] if base else []))
      names = [f'{base}.{alias.name}' for alias in node.names]
    else:
      continue
    for name in names:
      if name.split('.')[0] in LAYERS:
        yield node.lineno, name


def import_graph(root: pathlib.Path):
  """{module: {imported project module: first line}} over the LAYERS packages under `root`."""
  files = {_module_name(p, root): p for layer in LAYERS for p in (root / layer).rglob('*.py')}
  graph = {}
  for module, path in files.items():
    edges = graph.setdefault(module, {})
    for line, name in _imported_names(path, module):
      while name and name not in files:  # 'a.f': a function (or class, constant) of module a
        name = name.rpartition('.')[0]
      if name and name != module:
        edges.setdefault(name, line)
  return graph, files


def upward_imports(root: pathlib.Path):
  """'file:line imports module (layer below)' for each import against the direction."""
  graph, files = import_graph(root)
  rank = {layer: k for k, layer in enumerate(LAYERS)}
  found = []
  for module, edges in sorted(graph.items()):
    for imported, line in sorted(edges.items()):
      if rank[imported.split('.')[0]] > rank[module.split('.')[0]]:
        found.append(f'{files[module].relative_to(root)}:{line} imports {imported}')
  return found


def import_cycles(root: pathlib.Path):
  """Each module cycle once, as 'a -> b -> a' (depth-first search over the import graph)."""
  graph, _ = import_graph(root)
  cycles, state, stack = set(), {}, []

  def visit(module):
    state[module] = 'open'
    stack.append(module)
    for imported in graph.get(module, {}):
      if state.get(imported) == 'open':
        cycle = stack[stack.index(imported) :]
        start = cycle.index(min(cycle))  # one spelling per cycle
        cycles.add(' -> '.join(cycle[start:] + cycle[:start] + [min(cycle)]))
      elif imported not in state:
        visit(imported)
    stack.pop()
    state[module] = 'done'

  for module in sorted(graph):
    if module not in state:
      visit(module)
  return sorted(cycles)


def test_no_import_runs_against_the_direction():
  assert upward_imports(REPO) == []


def test_no_import_cycles():
  assert import_cycles(REPO) == []


@pytest.fixture
def tree(tmp_path):
  """A copy of the layout with one module per layer, importing only downward."""
  for k, layer in enumerate(LAYERS):
    (tmp_path / layer).mkdir()
    (tmp_path / layer / '__init__.py').write_text('')
    below = f'from {LAYERS[k - 1]} import base\n' if k else ''
    (tmp_path / layer / 'base.py').write_text(below + 'VALUE = 1\n')
  return tmp_path


def test_the_check_catches_an_upward_import_anywhere_in_a_file(tree):
  assert upward_imports(tree) == [] and import_cycles(tree) == []
  (tree / 'transform' / 'late.py').write_text(
    'def f():\n  from iouseg.base import VALUE\n  return VALUE\n'
  )
  assert upward_imports(tree) == ['transform/late.py:2 imports iouseg.base']


def test_the_check_catches_a_cycle_inside_a_layer(tree):
  (tree / 'trainer' / 'a.py').write_text('from trainer import b\n')
  (tree / 'trainer' / 'b.py').write_text('from . import a\n')
  assert import_cycles(tree) == ['trainer.a -> trainer.b -> trainer.a']
