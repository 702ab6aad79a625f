"""Eval data unlike the train split stops the pipeline before Transform, naming the anomaly."""

import numpy as np
import pytest
import tensorflow as tf

from components.anomaly_gate import DataAnomaliesError
from iouseg import demo_data, run_summary
from transform import data_format

from helpers import encoded, run_tiny_pipeline


def _write_jpeg_eval_split(path, count=4):
  rng = np.random.default_rng(3)
  with tf.io.TFRecordWriter(path) as writer:
    for i in range(count):
      image, mask = demo_data.make_pair(rng, 48, data_format.DEFAULT_IGNORE_LABEL)
      writer.write(
        data_format.make_example(
          encoded(image, 'JPEG'), 'jpeg', 48, 48, 3, f'eval/{i}.jpg', data_format.encode_png(mask)
        ).SerializeToString()
      )


@pytest.mark.e2e
def test_new_image_format_in_eval_stops_the_run_before_transform(tmp_path):
  data = tmp_path / 'data'
  (data / 'train').mkdir(parents=True)
  (data / 'eval').mkdir()
  demo_data.write_split(
    str(data / 'train' / 'demo.tfrecord'),
    8,
    seed=1,
    size=48,
    ignore_label=data_format.DEFAULT_IGNORE_LABEL,
  )
  _write_jpeg_eval_split(str(data / 'eval' / 'demo.tfrecord'))
  metadata = str(tmp_path / 'metadata.sqlite')
  with pytest.raises(Exception) as failure:
    run_tiny_pipeline(tmp_path, data, 'anomalies', train_steps=1)
  chain, error = [], failure.value
  while error is not None:
    chain.append(error)
    error = error.__cause__ or error.__context__
  message = '\n'.join(str(e) for e in chain)
  assert any(isinstance(e, DataAnomaliesError) for e in chain), message
  assert 'split eval, feature image/format' in message and 'jpeg' in message.lower()
  states = run_summary.latest_run(metadata, 'anomalies').component_states
  assert states['ExampleValidator'] == 'executed' and 'Transform' not in states
