"""Shared by the loss and recipe studies: their common flags, `--render`, the worker processes and
the recorded runs (`--json`), so that both commands behave alike."""

import concurrent.futures
import json
import multiprocessing
import os
import pathlib
import shlex
import sys

import tensorflow as tf

import report_table
import tf_env  # noqa: F401  (first: sets up TensorFlow)


def add_run_flags(parser, max_steps: int, jobs_help: str, json_help: str) -> None:
  """Seeds, the convergence settings, --jobs, --quick, --out, --json and --render."""
  parser.add_argument('--seeds', default='0,1,2', help='(default: %(default)s)')
  parser.add_argument('--max-steps', type=int, default=max_steps, help='(default: %(default)s)')
  parser.add_argument('--eval-every', type=int, default=100, help='(default: %(default)s)')
  parser.add_argument(
    '--patience',
    type=int,
    default=3,
    help='evaluations without improvement before stopping (default: %(default)s)',
  )
  parser.add_argument('--batch-size', type=int, default=16, help='(default: %(default)s)')
  parser.add_argument('--jobs', type=int, default=2, help=f'{jobs_help} (default: %(default)s)')
  parser.add_argument(
    '--quick', action='store_true', help='demo only, 1 seed, 20 steps, validation every 10'
  )
  parser.add_argument('--out', help='also write the markdown table here')
  parser.add_argument('--json', help=json_help)
  parser.add_argument(
    '--render',
    metavar='JSON',
    help="no training: the table of a --json file's runs, under its command",
  )


def add_loss_flag(parser, runs: str) -> None:
  """--loss: the loss of `runs` (default: the Trainer's), named in the command a table is under,
  so the table still says what it trained with after the Trainer's default changes."""
  from trainer.config import TrainerConfig
  from trainer.losses import LOSS_NAMES

  parser.add_argument(
    '--loss',
    default=TrainerConfig().losses.loss,
    choices=LOSS_NAMES,
    help=f"the loss of {runs} (default: the Trainer's, %(default)s)",
  )


def render(path: str, parser, settings, table, out, script: str) -> int:
  """Publishes `table(results, settings)` of a --json file's runs, under the command that made them
  (its flags parsed again by `parser` and turned into settings by `settings`)."""
  recorded = json.loads(pathlib.Path(path).read_text())
  command = shlex.split(recorded['command'])[2:]
  return report_table.publish(
    table(recorded['results'], settings(parser.parse_args(command))),
    out,
    script,
    device=recorded.get('device', ''),
    argv=command,
  )


def map_in_processes(function, jobs: int, *iterables) -> list:
  """`map(function, *iterables)`, in `jobs` fresh interpreters when jobs > 1 (TensorFlow's runtime
  does not survive fork())."""
  if jobs == 1:
    return list(map(function, *iterables))
  with concurrent.futures.ProcessPoolExecutor(
    jobs, mp_context=multiprocessing.get_context('spawn')
  ) as pool:
    return list(pool.map(function, *iterables))


def apply_run_settings(args, tasks: int):
  """The common flags -> settings: seeds as ints, --quick applied, --jobs capped at the `tasks`
  there are (a callable of the settings: what --quick leaves), each job's share of the CPU
  threads (0: all, in this process)."""
  args.seeds = [int(s) for s in args.seeds.split(',')]
  if args.quick:
    args.datasets, args.seeds, args.max_steps, args.eval_every, args.patience = (
      ['demo'],
      [0],
      20,
      10,
      1,
    )
  args.jobs = max(1, min(args.jobs, tasks(args)))
  args.threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else 0
  return args


def publish(results: list, make_table, json_path, out, script: str) -> int:
  """Writes the runs to `json_path` (first: they are kept even if the table fails) with this
  command and device, then publishes `make_table()`."""
  device = ', GPU' if tf.config.list_physical_devices('GPU') else ', no GPU'
  if json_path:
    pathlib.Path(json_path).write_text(
      json.dumps(
        {
          'command': f'python benchmarks/{script} {" ".join(sys.argv[1:])}'.rstrip(),
          'device': device,
          'results': results,
        },
        indent=1,
      )
      + '\n'
    )
  return report_table.publish(make_table(), out, script, device=device)
