"""Continuous training: resuming a killed Trainer, and warm-starting from an earlier model.

Resume. A Trainer killed mid-run (preemption, OOM kill, Ctrl-C) and run again with the same inputs
and settings continues after its last completed epoch. Keras' `BackupAndRestore` writes the model and
optimizer state at the end of every epoch to a folder named by a hash of what the training depends
on (`run_key`: the train and eval file patterns, the transform graph, the base model, the
TrainerConfig, the train and eval steps), beside the Trainer's output folders rather than in the
per-execution model dir, which is new on every execution: with LocalDagRunner that is
`PIPELINE_ROOT/Trainer/training_backup/<key>/`. `ResumableBackup.clear` removes it once the model is
exported. Another input or setting gives another key: that training starts at epoch 1.

Warm start. `warm_start` copies the weights of a SavedModel this project's Trainer exported
(`fn_args.base_model`, the latest blessed model when the pipeline runs with `warm_start=True`) into
the freshly built network, layer by layer by name, and refuses with a message naming each layer whose
weights differ in shape (another `num_classes`, `base_filters`, `depth` or `channels`). The optimizer
starts afresh; `image_size` may differ (the network is fully convolutional).
"""

import hashlib
import json
import logging
import os

import tensorflow as tf
import tf_keras

BACKUP_FOLDER = 'training_backup'
# Hex digits of the run key in the backup folder's name.
_KEY_LENGTH = 16
# Mismatching layers named in a warm-start error before '... and N more'.
_MISMATCHES_SHOWN = 3


def run_key(fn_args, config) -> str:
  """A hash of everything the trained weights depend on: the Trainer's input artifacts (TFX never
  rewrites an artifact's files, so its URI stands for its content), its settings and its steps."""
  described = {
    'train_files': list(fn_args.train_files),
    'eval_files': list(fn_args.eval_files),
    'transform_graph': fn_args.transform_output,
    'base_model': fn_args.base_model,
    'trainer_config': config.to_dict(),
    'train_steps': fn_args.train_steps,
    'eval_steps': fn_args.eval_steps,
  }
  text = json.dumps(described, sort_keys=True, default=str)
  return hashlib.sha256(text.encode('utf-8')).hexdigest()[:_KEY_LENGTH]


def backup_dir(fn_args, config) -> str:
  """Where this training's backups live: `<Trainer outputs>/training_backup/<run key>`, beside the
  per-execution output folders (LocalDagRunner: `PIPELINE_ROOT/Trainer/model_run/<execution id>`, so
  `PIPELINE_ROOT/Trainer/training_backup/<key>`). Where outputs lie under a folder of the run
  (`kubeflow.local_launcher`, KFP: `PIPELINE_ROOT/<run>/Trainer/model_run`) it is that run's
  `PIPELINE_ROOT/<run>/training_backup/<key>`: a retry of the task resumes, a new run does not."""
  model_run = fn_args.model_run_dir.rstrip('/')
  return os.path.join(
    os.path.dirname(os.path.dirname(model_run)), BACKUP_FOLDER, run_key(fn_args, config)
  )


class ResumableBackup(tf_keras.callbacks.BackupAndRestore):
  """`BackupAndRestore` at the end of every epoch, kept after `fit` until `clear` (so that a Trainer
  killed between training and export does not train again), and saying when it resumed."""

  def __init__(self, directory: str, epochs: int):
    super().__init__(directory, save_freq='epoch', delete_checkpoint=False)
    self._epochs = epochs
    self._said = False

  def _say(self, text: str) -> None:
    logging.info('%s', text)
    print(text, flush=True)  # beside the Keras epoch lines that `iouseg run` shows
    self._said = True

  def on_train_begin(self, logs=None):
    super().on_train_begin(logs)  # restores the model and optimizer when a backup exists
    self._said = False

  def on_epoch_begin(self, epoch, logs=None):
    if not self._said and epoch > 0:
      self._say(f'Resuming after epoch {epoch}/{self._epochs} from the backup in {self.backup_dir}')
    self._said = True
    super().on_epoch_begin(epoch, logs)

  def on_train_end(self, logs=None):
    if not self._said:  # no epoch began: every epoch was in the backup
      self._say(f'All {self._epochs} epochs were in the backup in {self.backup_dir}; exporting')
    super().on_train_end(logs)

  def clear(self) -> None:
    """Removes the backup: call it once the model is exported."""
    if tf.io.gfile.exists(self.backup_dir):
      tf.io.gfile.rmtree(self.backup_dir)


def backup_callback(fn_args, config, epochs: int) -> ResumableBackup:
  """The callback that resumes this training (same inputs and settings) after its last epoch."""
  return ResumableBackup(backup_dir(fn_args, config), epochs)


def _weight_shapes(layer) -> list[tuple]:
  return [tuple(w.shape) for w in layer.weights]


def weight_mismatches(network: tf_keras.Model, base: tf_keras.Model) -> list[str]:
  """One line per layer with weights whose shapes differ between `network` and `base` (by name),
  or that only one of them has."""
  base_layers = {layer.name: layer for layer in base.layers if layer.weights}
  lines = []
  for layer in network.layers:
    if not layer.weights:
      continue
    other = base_layers.pop(layer.name, None)
    if other is None:
      lines.append(f'layer {layer.name} is not in the base model')
    elif _weight_shapes(other) != _weight_shapes(layer):
      lines.append(
        f'layer {layer.name}: weights {_weight_shapes(other)} in the base model, '
        f'{_weight_shapes(layer)} here'
      )
  lines += [f'layer {name} of the base model is not in this model' for name in base_layers]
  return lines


def architecture(network: tf_keras.Model) -> dict:
  """The TrainerConfig settings (by their flat names) that shape the weights of a
  `trainer.model.build_fcn` network, read from its layers (by their names there); {} for a network
  of another form."""
  layers = {layer.name: layer for layer in network.layers}
  if 'enc0_conv1' not in layers or 'logits' not in layers:
    return {}
  first = tuple(layers['enc0_conv1'].kernel.shape)  # 3 x 3 x channels x base_filters
  return {
    'num_classes': int(layers['logits'].kernel.shape[-1]),
    'channels': int(first[2]),
    'base_filters': int(first[3]),
    'depth': sum(1 for name in layers if name.startswith('enc') and name.endswith('_conv1')),
  }


def warm_start(network: tf_keras.Model, base_model_path: str | None) -> bool:
  """Copies the weights of the SavedModel at `base_model_path` (the serving dir of a model this
  project's Trainer exported) into `network`; False, doing nothing, when the path is None. ValueError
  naming the mismatching layers when the two architectures differ."""
  if not base_model_path:
    logging.info('Cold start: no base model')
    return False
  base = tf_keras.models.load_model(base_model_path, compile=False)
  mismatches = weight_mismatches(network, base)
  if mismatches:
    shown = mismatches[:_MISMATCHES_SHOWN]
    if len(mismatches) > len(shown):
      shown.append(f'... and {len(mismatches) - len(shown)} more')
    ours, theirs = architecture(network), architecture(base)
    differ = ', '.join(
      f'{name} {theirs[name]} (this run: {ours[name]})'
      for name in ours
      if name in theirs and theirs[name] != ours[name]
    )
    raise ValueError(
      f'cannot warm-start from {base_model_path}: its architecture differs from this model'
      f'{": the base model has " + differ if differ else ""} ({"; ".join(shown)}); train with '
      'the num_classes, channels, base_filters and depth of the base model, or without warm start'
    )
  by_name = {layer.name: layer for layer in base.layers}
  copied = [layer for layer in network.layers if layer.weights]
  for layer in copied:
    layer.set_weights(by_name[layer.name].get_weights())
  logging.info('Warm start: the weights of %d layers from %s', len(copied), base_model_path)
  print(f'Warm start from {base_model_path}', flush=True)
  return True
