"""TF Serving warm-up requests for a pushed SavedModel.

TF Serving replays `<version>/assets.extra/tf_serving_warmup_requests` when it loads a version,
before the version takes traffic, so the first client does not pay for graph tracing and kernel
set-up (https://www.tensorflow.org/tfx/serving/saved_model_warmup). The file is a TFRecord of
`tensorflow_serving.apis.prediction_log_pb2.PredictionLog`s (the `tensorflow-serving-api` package,
already in the lock through TFX and tfx-bsl); TFX's InfraValidator writes the same file
(`path_utils.warmup_file_path`, `io_utils.write_tfrecord_file`).

The requests are built as a client would send them: `PredictRequest`s for `serving_default` whose
one input (`examples`, serialized `tf.Example`s) carries only `image/encoded` of a few eval records,
one record per request. A warm-up request that fails makes TF Serving refuse to load the version, so
`check_requests` replays each one against the SavedModel before the file is written into a push.
"""

import os
from collections.abc import Iterable, Sequence

import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

from transform import data_format

ASSETS_EXTRA = 'assets.extra'
WARMUP_FILE = 'tf_serving_warmup_requests'
SIGNATURE = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
# Eval records turned into warm-up requests (TF Serving reads at most 1000).
DEFAULT_NUM_REQUESTS = 4
# The split the requests are read from, when the examples have it; else their first split.
EVAL_SPLIT = 'eval'
# What a client sends: the image only (no mask, no file name).
CLIENT_FEATURES = (data_format.IMAGE_ENCODED,)


def warmup_path(saved_model_dir: str) -> str:
  """`<saved_model_dir>/assets.extra/tf_serving_warmup_requests`."""
  return path_utils.warmup_file_path(saved_model_dir)


def client_records(
  examples, num_records: int = DEFAULT_NUM_REQUESTS, split: str | None = None
) -> list[bytes]:
  """The first `num_records` records of the examples' eval split (GZIP TFRecords of tf.Example, as
  ExampleGen and the RecordValidator write them), each reduced to `CLIENT_FEATURES`."""
  splits = artifact_utils.decode_split_names(examples.split_names)
  split = split or (EVAL_SPLIT if EVAL_SPLIT in splits else splits[0])
  files = sorted(fileio.glob(os.path.join(artifact_utils.get_split_uri([examples], split), '*')))
  if not files:
    raise ValueError(f'no records in split {split!r} of {examples.uri}')
  records = []
  for serialized in tf.data.TFRecordDataset(files, compression_type='GZIP').take(num_records):
    full = tf.train.Example.FromString(serialized.numpy())
    client = tf.train.Example()
    for key in CLIENT_FEATURES:
      client.features.feature[key].CopyFrom(full.features.feature[key])
    records.append(client.SerializeToString())
  return records


def _loaded(model):
  return tf.saved_model.load(model) if isinstance(model, str) else model


def input_key(model, signature_name: str = SIGNATURE) -> str:
  """The signature's one input of serialized examples (`examples` in this project's models);
  `model`: a SavedModel directory or a loaded one."""
  signature = _loaded(model).signatures[signature_name]
  keys = list(signature.structured_input_signature[1])
  if len(keys) != 1:
    raise ValueError(
      f'{signature_name} takes {keys}; warm-up needs one input of serialized examples'
    )
  return keys[0]


def predict_requests(
  records: Iterable[bytes], key: str, model_name: str = '', signature_name: str = SIGNATURE
) -> list[predict_pb2.PredictRequest]:
  """One PredictRequest per serialized record, as a TF Serving client builds it."""
  requests = []
  for record in records:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    request.inputs[key].CopyFrom(tf.make_tensor_proto([record], dtype=tf.string))
    requests.append(request)
  return requests


def replay(model, requests: Sequence[predict_pb2.PredictRequest]) -> list[dict]:
  """Runs each request's signature on its inputs in this process, as TF Serving's warm-up does;
  returns each request's outputs as numpy arrays by name. `model`: a SavedModel directory or a
  loaded one."""
  model = _loaded(model)
  outputs = []
  for request in requests:
    signature = model.signatures[request.model_spec.signature_name or SIGNATURE]
    inputs = {name: tf.constant(tf.make_ndarray(tensor)) for name, tensor in request.inputs.items()}
    outputs.append({name: value.numpy() for name, value in signature(**inputs).items()})
  return outputs


def check_requests(model, requests: Sequence[predict_pb2.PredictRequest]) -> None:
  """Raises if any request fails on the model: TF Serving would refuse to load the version."""
  if not requests:
    raise ValueError('no warm-up requests')
  replay(model, requests)


def write_warmup_file(saved_model_dir: str, requests: Sequence[predict_pb2.PredictRequest]) -> str:
  """Writes the requests as PredictionLogs to the model's warm-up file; returns its path."""
  path = warmup_path(saved_model_dir)
  io_utils.write_tfrecord_file(
    path,
    *[
      prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
      for request in requests
    ],
  )
  return path


def read_warmup_file(path: str) -> list[prediction_log_pb2.PredictionLog]:
  return [
    prediction_log_pb2.PredictionLog.FromString(record.numpy())
    for record in tf.data.TFRecordDataset([path])
  ]


def stage_with_warmup(
  model_path: str,
  staging_dir: str,
  examples,
  model_name: str = '',
  num_requests: int = DEFAULT_NUM_REQUESTS,
) -> str:
  """A copy of the SavedModel at `staging_dir` with the warm-up file in its assets.extra, the
  requests built from `examples` and checked against the model; returns `staging_dir`."""
  model = tf.saved_model.load(model_path)
  requests = predict_requests(client_records(examples, num_requests), input_key(model), model_name)
  check_requests(model, requests)
  if fileio.exists(staging_dir):
    fileio.rmtree(staging_dir)
  io_utils.copy_dir(model_path, staging_dir)
  write_warmup_file(staging_dir, requests)
  return staging_dir
