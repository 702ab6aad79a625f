"""What several test files share: the repository's paths, the tiny model, and helpers that run it
through the pipeline and read back what ML Metadata recorded.

Import from here (`from helpers import ...`); `conftest.py` holds only fixtures and the environment
set-up. TensorFlow, TFX and the project's modules are imported inside the functions that need them,
so importing this module loads none of them.
"""

import importlib
import io
import os
import pathlib
import shutil
import sys

from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]
# Real image/mask samples shipped with the repository (licences in their README).
SAMPLES = REPO / 'data' / 'samples'
BENCHMARKS = REPO / 'benchmarks'

# A model that trains on 32 px in seconds: enough to check wiring, blessing and export.
TINY_SIZE, TINY_CLASSES = 32, 4
TINY_MODEL = dict(
  image_size=TINY_SIZE, num_classes=TINY_CLASSES, base_filters=8, depth=2, batch_size=8, epochs=2
)
# The default pipeline's components in the order `iouseg run` runs them, its Resolver apart.
PIPELINE_COMPONENTS = (
  'ImportExampleGen',
  'RecordValidator',
  'StatisticsGen',
  'SchemaGen',
  'ExampleValidator',
  'AnomalyGate',
  'Transform',
  'Trainer',
  'Evaluator',
  'Pusher',
  'ModelCardGenerator',
)
# The components whose artifacts the ModelCardGenerator reads.
MODEL_CARD_SOURCES = (
  'RecordValidator',
  'StatisticsGen',
  'Transform',
  'Trainer',
  'Evaluator',
  'Pusher',
)


def benchmark_module(monkeypatch, name: str):
  """`benchmarks/<name>.py` imported as a module (the benchmarks import each other by name)."""
  monkeypatch.syspath_prepend(str(BENCHMARKS))
  return importlib.import_module(name)


def tiny_model_flags(**overrides) -> list:
  """TINY_MODEL (with `overrides`) as `iouseg run` / `compile-kubeflow` flags."""
  return [
    item
    for name, value in {**TINY_MODEL, **overrides}.items()
    for item in ('--' + name.replace('_', '-'), str(value))
  ]


def iouseg_run_argv(base: pathlib.Path, data_root, name: str, train_steps: int) -> list:
  """The `iouseg run` command line (the installed console script, as a user types it) of a tiny
  pipeline with its outputs under `base`, as `run_tiny_pipeline` lays them out; model flags
  apart."""
  script = shutil.which('iouseg', path=os.path.dirname(sys.executable))
  return ([script] if script else [sys.executable, '-m', 'iouseg.cli']) + iouseg_run_args(
    base, data_root, name, train_steps
  )


def tiny_run_args(tmp_path: pathlib.Path, data_root, *flags) -> list:
  """`iouseg run` arguments (what `iouseg.cli.main` takes) for the tiny model, every path under
  `tmp_path`, then `flags`: for runs that should be refused before anything is written."""
  return [
    'run',
    '--data-root',
    str(data_root),
    '--pipeline-root',
    str(tmp_path / 'root'),
    '--serving-dir',
    str(tmp_path / 'serving'),
    '--metadata',
    str(tmp_path / 'm.sqlite'),
    *tiny_model_flags(),
    *flags,
  ]


def iouseg_run_args(
  base: pathlib.Path, data_root, name: str, train_steps: int, min_mean_iou: float = 0
) -> list:
  """`iouseg_run_argv`'s arguments, from the subcommand on (what `iouseg.cli.main` takes), with
  the blessing threshold `min_mean_iou`."""
  return [
    'run',
    '--data-root',
    str(data_root),
    '--pipeline-root',
    str(base / 'root'),
    '--serving-dir',
    str(base / 'serving'),
    '--metadata',
    str(base / 'metadata.sqlite'),
    '--pipeline-name',
    name,
    '--train-steps',
    str(train_steps),
    '--eval-steps',
    '1',
    '--min-mean-iou',
    str(min_mean_iou),
  ]


def run_tiny_pipeline(
  base: pathlib.Path,
  data_root,
  name: str,
  *,
  train_steps: int,
  min_mean_iou: float = 0.0,
  eval_steps: int = 1,
  trainer_overrides=None,
  baseline: str = 'resolver',
  warm_start: bool = False,
  beam_pipeline_args=None,
  **extras,
) -> str:
  """One `local_runner.run` of the tiny model with its outputs under `base` (pipeline root `root`,
  serving dir `serving`, ML Metadata `metadata.sqlite`); returns the metadata path. `extras` are
  `pipeline.settings.OptionalComponents` fields (tune_trials, tune_steps, infer_data_root)."""
  from tfx import v1 as tfx

  from pipeline import local_runner, settings
  from trainer.config import TrainerConfig

  model = {**TINY_MODEL, **(trainer_overrides or {})}
  metadata = str(base / 'metadata.sqlite')
  local_runner.run(
    metadata,
    settings.PipelinePaths(
      pipeline_name=name,
      pipeline_root=str(base / 'root'),
      data_root=str(data_root),
      serving_model_dir=str(base / 'serving'),
    ),
    settings.DataSettings(split_patterns=local_runner.split_patterns_for(str(data_root))),
    settings.TrainingSettings(
      TrainerConfig.from_flat(**model),
      tfx.proto.TrainArgs(num_steps=train_steps),
      tfx.proto.EvalArgs(num_steps=eval_steps),
      warm_start=warm_start,
    ),
    settings.BlessingSettings(min_mean_iou, baseline=baseline),
    settings.OptionalComponents(**extras),
    beam_pipeline_args=beam_pipeline_args,
  )
  return metadata


def recorded_artifacts(metadata: str, node: str):
  """(inputs, outputs, exec properties) of `node`'s latest execution recorded in ML Metadata: the
  TFX artifacts by key, and its settings."""
  from ml_metadata.proto import metadata_store_pb2

  from iouseg import mlmd_store

  store = mlmd_store.open_store(metadata)
  execution = max(
    (e for e in store.get_executions() if mlmd_store.node_id(store, e) == node), key=lambda e: e.id
  )
  inputs = mlmd_store.tfx_artifacts(store, execution, (metadata_store_pb2.Event.INPUT,))
  outputs = mlmd_store.tfx_artifacts(store, execution, (metadata_store_pb2.Event.OUTPUT,))
  properties = {
    name: (value.string_value if value.HasField('string_value') else value.int_value)
    for name, value in execution.custom_properties.items()
  }
  return inputs, outputs, properties


def rerun_executor(
  metadata: str, node: str, executor_class, beam_args, out_dir: str, extra_outputs=None
) -> dict:
  """Runs `node`'s executor again with its recorded inputs and settings, writing under `out_dir`;
  `extra_outputs` ({key: artifact}) adds outputs the run did not have. Returns the new outputs."""
  import tensorflow as tf
  from tfx.dsl.components.base import base_beam_executor

  inputs, outputs, properties = recorded_artifacts(metadata, node)
  outputs.update({key: [artifact] for key, artifact in (extra_outputs or {}).items()})
  for key, artifacts in outputs.items():
    for i, artifact in enumerate(artifacts):
      artifact.uri = os.path.join(out_dir, node, key, str(i))
      tf.io.gfile.makedirs(artifact.uri)
  context = base_beam_executor.BaseBeamExecutor.Context(
    beam_pipeline_args=beam_args, tmp_dir=os.path.join(out_dir, 'tmp'), unique_id=node
  )
  executor_class(context).Do(inputs, outputs, properties)
  return outputs


def fit_arguments(
  monkeypatch, tmp_path, config, make_dataset, train_files, eval_files, train_steps: int
) -> dict:
  """What trainer/task.py's `train_and_export` hands `Model.fit` for `config` and those FnArgs
  fields: fit's keyword arguments and, under 'model', the model. Runs in-process with
  `make_dataset` in place of trainer/data.py's and no Transform output, and stops at the fit
  call."""
  import pytest
  from tfx.components.trainer.fn_args_utils import FnArgs

  from trainer import task

  class Stop(Exception):
    pass

  fitted = {}

  def fake_fit(model, *_, **kwargs):
    fitted.update(kwargs, model=model)
    raise Stop

  monkeypatch.setattr(task.data, 'make_dataset', make_dataset)
  monkeypatch.setattr(task.tft, 'TFTransformOutput', lambda path: None)
  monkeypatch.setattr(task, 'label_positions', lambda *_: None)  # no graph: no lateral check
  monkeypatch.setattr(task.tf_keras.Model, 'fit', fake_fit)
  with pytest.raises(Stop):
    task.train_and_export(
      FnArgs(
        eval_steps=1,
        transform_output='unused',
        model_run_dir=str(tmp_path),
        serving_model_dir=str(tmp_path),
        train_files=train_files,
        eval_files=eval_files,
        train_steps=train_steps,
      ),
      config,
    )
  return fitted


def encoded(image, image_format: str = 'PNG') -> bytes:
  """PNG or JPEG bytes of a PIL image or an array (HxW or HxWxC; its dtype decides the bit
  depth)."""
  if not isinstance(image, Image.Image):
    image = Image.fromarray(image)
  buffer = io.BytesIO()
  image.save(buffer, format=image_format)
  return buffer.getvalue()


def unlabelled_record(image_bytes: bytes, filename: str | None = None) -> bytes:
  """A serialized record for batch inference: `image/encoded`, and `image/filename` when given."""
  import tensorflow as tf  # here: most tests that import helpers need no TensorFlow

  from transform import data_format

  feature = {
    data_format.IMAGE_ENCODED: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_bytes]))
  }
  if filename is not None:
    feature[data_format.IMAGE_FILENAME] = tf.train.Feature(
      bytes_list=tf.train.BytesList(value=[filename.encode()])
    )
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def run_watched(argv: list, react, timeout_s: float = 900) -> dict:
  """Runs `argv` in a process group of its own, its stdout and stderr read line by line as they
  come; `react(line)` sees each line of either, in the order they arrive, and returning True
  SIGKILLs the whole group (Beam and TensorFlow threads with it). Returns the exit status and both
  outputs."""
  import queue
  import signal
  import subprocess
  import threading

  env = dict(os.environ, TF_USE_LEGACY_KERAS='1', PYTHONUNBUFFERED='1')
  process = subprocess.Popen(
    argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
  )
  lines, texts = queue.Queue(), {'stdout': [], 'stderr': []}

  def read(name, stream):
    for line in stream:
      lines.put((name, line))
    lines.put((name, None))

  readers = [
    threading.Thread(target=read, args=(name, getattr(process, name)), daemon=True)
    for name in texts
  ]
  for reader in readers:
    reader.start()
  kill = lambda: os.killpg(process.pid, signal.SIGKILL)  # noqa: E731
  watchdog = threading.Timer(timeout_s, kill)
  watchdog.start()
  try:
    open_streams, killed = len(readers), False
    while open_streams:
      name, line = lines.get()
      if line is None:
        open_streams -= 1
        continue
      texts[name].append(line)
      if not killed and react(line.rstrip('\n')):
        kill()
        killed = True
    rc = process.wait()
  finally:
    watchdog.cancel()
  return {'rc': rc, **{name: ''.join(text) for name, text in texts.items()}}


def torn_outputs(metadata: str, serving: str) -> list:
  """What a later run would take as good but is not: an artifact ML Metadata holds as LIVE whose
  folder is missing or empty, a Model or TransformGraph without its SavedModel, a blessing or a push
  whose model has no `saved_model.pb`, a numbered folder in the serving dir that is no complete
  version."""
  import glob

  from ml_metadata.proto import metadata_store_pb2

  from iouseg import mlmd_store

  def saved_model_in(path):
    return bool(glob.glob(os.path.join(path, '**', 'saved_model.pb'), recursive=True))

  store = mlmd_store.open_store(metadata)
  types = {t.id: t.name for t in store.get_artifact_types()}
  torn = []
  for artifact in store.get_artifacts():
    if artifact.state != metadata_store_pb2.Artifact.LIVE:
      continue
    kind, uri, props = types[artifact.type_id], artifact.uri, artifact.custom_properties
    if kind == 'PushedModel':  # its folder is empty when the push found the model served already
      pushed = props['pushed_destination'].string_value if props['pushed'].int_value else ''
      if pushed and not os.path.exists(os.path.join(pushed, 'saved_model.pb')):
        torn.append(f'push {uri} to a version without saved_model.pb')
    elif not os.path.exists(uri) or (os.path.isdir(uri) and not os.listdir(uri)):
      torn.append(f'{kind} {uri}: missing or empty')
    elif kind in ('Model', 'TransformGraph') and not saved_model_in(uri):
      torn.append(f'{kind} {uri}: no saved_model.pb')
    elif kind == 'ModelBlessing' and props['blessed'].int_value == 1:
      if not saved_model_in(props['current_model'].string_value):
        torn.append(f'blessing {uri} of a model without saved_model.pb')
  for name in os.listdir(serving) if os.path.isdir(serving) else []:
    if name.isdigit() and not os.path.exists(os.path.join(serving, name, 'saved_model.pb')):
      torn.append(f'serving version {name} without saved_model.pb')
  return torn
