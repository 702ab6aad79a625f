"""Where training runs: a `tf.distribute` strategy and the precision policy."""

import logging

import tensorflow as tf
import tf_keras


def get_strategy(name: str) -> tf.distribute.Strategy:
  """'mirrored': every GPU of this machine (one CPU replica without GPUs);
  'multi_worker': several machines, each reading its role from the TF_CONFIG environment variable."""
  if name == 'mirrored':
    return tf.distribute.MirroredStrategy()
  if name == 'multi_worker':
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise ValueError(f"unknown distribution {name!r}; choose 'mirrored' or 'multi_worker'")


def configure_precision(mixed_precision: bool) -> None:
  """`mixed_float16` on GPU when asked; CPUs gain nothing from float16, so they stay in float32."""
  if mixed_precision and tf.config.list_physical_devices('GPU'):
    tf_keras.mixed_precision.set_global_policy('mixed_float16')
  else:
    if mixed_precision:
      logging.warning('mixed_precision requested but no GPU is visible: training in float32')
    tf_keras.mixed_precision.set_global_policy('float32')
