"""AnomalyGate: stops the pipeline before Transform when ExampleValidator found anomalies.

TFX's ExampleValidator only records anomalies (a missing feature, a wrong type, a new image format
value...) and lets the run go on; a segmentation model trained on such data fails later with an
error that names nothing. This component reads the anomalies of every split and fails the run with
one line per anomaly: split, feature, TFDV's short description. Transform runs after it.

Identifier features (the file name) are left out: TFDV infers a value domain for a string feature
with few distinct values, so on a small train split every eval file name would be "unexpected".
"""

import os

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.dsl.io import fileio
from tfx.types import artifact_utils

from transform import data_format

# Where ExampleValidator (TFX 1.16) writes each split's anomalies inside its artifact.
_ANOMALIES_FILE = 'SchemaDiff.pb'


class DataAnomaliesError(RuntimeError):
  pass


def anomaly_lines(anomalies_uri: str, split_names, ignored_features=()) -> list:
  lines = []
  for split in split_names:
    path = os.path.join(anomalies_uri, f'Split-{split}', _ANOMALIES_FILE)
    found = anomalies_pb2.Anomalies()
    found.ParseFromString(fileio.open(path, 'rb').read())
    for feature, info in sorted(found.anomaly_info.items()):
      if feature in ignored_features:
        continue
      lines.append(
        f'split {split}, feature {feature}: {info.short_description}: {info.description}'
      )
    if found.HasField('dataset_anomaly_info'):
      lines.append(f'split {split}, data set: {found.dataset_anomaly_info.description}')
  return lines


@tfx.dsl.components.component
def AnomalyGate(
  anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
  identifier_features: tfx.dsl.components.Parameter[str] = data_format.IMAGE_FILENAME,
) -> None:
  """Raises DataAnomaliesError naming every anomaly outside `identifier_features` (comma-separated);
  passes silently when there is none."""
  lines = anomaly_lines(
    anomalies.uri,
    artifact_utils.decode_split_names(anomalies.split_names),
    identifier_features.split(','),
  )
  if lines:
    raise DataAnomaliesError(
      f'ExampleValidator found {len(lines)} anomalies against the schema; stopping before '
      f'Transform (anomalies: {anomalies.uri}):\n  ' + '\n  '.join(lines)
    )
