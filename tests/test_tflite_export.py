"""`iouseg export --format tflite`: a pushed tiny model as a TFLite file whose class ids, on images
prepared as docs/export.md tells an app to prepare them, are the SavedModel's; the printed figures
are the file's and the SavedModel's; bad input refused in one line with nothing written.

One tiny pipeline run makes the pushed model (a real serving dir) for the tests that export it
(e2e); bad input is refused before any model is loaded, so those tests need none.
"""

import re

import numpy as np
import pytest
import tensorflow as tf

from iouseg import cli, predict
from trainer import export
from transform import data_format, features

from helpers import TINY_CLASSES, TINY_SIZE, run_tiny_pipeline
from iou_reference import numpy_confusion, per_class_and_mean

NAME = 'tflite_export'
# Enough steps that the tiny model paints foreground (the agreement below is then not all
# background against all background), in seconds.
TRAIN_STEPS = 40
# float16 weights move a probability by about 1e-3: a pixel flips only where its best foreground
# sigmoid lies that close to the 0.5 threshold or to the runner-up. 99.5% of the 8 x 32 x 32 eval
# pixels allows 40 such pixels; a wrong normalisation, resize or class-id rule misses by far more.
FLOAT16_AGREEMENT = 0.995
# How far the printed IoU of the file may be from the one computed here from images the test
# prepares itself (a flipped pixel or two moves it by about 1e-3).
IOU_TOLERANCE = 0.01


@pytest.fixture(scope='module')
def pushed(tmp_path_factory, tiny_demo_data):
  base = tmp_path_factory.mktemp(NAME)
  run_tiny_pipeline(base, tiny_demo_data, NAME, train_steps=TRAIN_STEPS)
  return base / 'serving'


def _export(capfd, model, data_root, output, *flags):
  """(exit status, stdout, stderr) of `iouseg export` run in this process."""
  capfd.readouterr()
  status = cli.main(
    [
      'export',
      '--model',
      str(model),
      '--format',
      'tflite',
      '--output',
      str(output),
      '--eval-data',
      str(data_root / 'eval'),
      '--calibration-data',
      str(data_root / 'train'),
      *flags,
    ]
  )
  out, err = capfd.readouterr()
  return status, out, err


def _eval_split(pushed, data_root):
  """Per eval record: the image as an app prepares it (decoded, resized bilinearly to the model
  size, 0..255 floats), the SavedModel's class ids at the model size, the label's class ids and
  which pixels count."""
  records = [
    r.numpy() for r in tf.data.TFRecordDataset(tf.io.gfile.glob(str(data_root / 'eval' / '*')))
  ]
  loaded = tf.saved_model.load(predict.resolve_saved_model(str(pushed)))
  served = loaded.signatures[export.MODEL_RESOLUTION_SIGNATURE](examples=tf.constant(records))
  label = loaded.signatures[export.TRANSFORM_SIGNATURE](examples=tf.constant(records))[
    features.LABEL
  ].numpy()
  images = [
    tf.image.resize(
      tf.io.decode_png(
        tf.train.Example.FromString(r)
        .features.feature[data_format.IMAGE_ENCODED]
        .bytes_list.value[0],
        channels=3,
      ),
      [TINY_SIZE, TINY_SIZE],
      method='bilinear',
      antialias=True,
    ).numpy()
    for r in records
  ]
  return images, served['class_ids'].numpy(), label.argmax(-1), label.sum(-1) > 0


def _class_ids(path, images):
  """The file's class ids for each image, by a plain `tf.lite.Interpreter`."""
  interpreter = tf.lite.Interpreter(model_path=str(path))
  interpreter.allocate_tensors()
  (inputs,), (outputs,) = interpreter.get_input_details(), interpreter.get_output_details()
  assert list(inputs['shape']) == [1, TINY_SIZE, TINY_SIZE, 3] and inputs['dtype'] == np.float32
  ids = []
  for image in images:
    interpreter.set_tensor(inputs['index'], image[None].astype(np.float32))
    interpreter.invoke()
    ids.append(interpreter.get_tensor(outputs['index'])[0])
  return np.stack(ids), interpreter


def _mean_iou(true_ids, predicted, valid):
  return per_class_and_mean(numpy_confusion(true_ids, predicted, valid, TINY_CLASSES))[1]


def _printed(out, row):
  """The SavedModel's and the file's figure on the report's `row` line."""
  line = next(line for line in out.splitlines() if line.startswith(row))
  saved, exported = re.findall(r'\d+\.\d+', line)[:2]
  return float(saved), float(exported)


@pytest.fixture(scope='module')
def eval_split(pushed, tiny_demo_data):
  return _eval_split(pushed, tiny_demo_data)


@pytest.mark.e2e
def test_float16_file_gives_the_saved_models_class_ids(
  pushed, tiny_demo_data, eval_split, tmp_path, capfd
):
  output = tmp_path / 'model.tflite'
  status, out, err = _export(capfd, pushed, tiny_demo_data, output, '--quantize', 'float16')
  assert status == 0, err
  images, served, true_ids, valid = eval_split
  assert np.mean(served > 0) > 0.05  # the model paints foreground: agreement is not trivial
  ids, _ = _class_ids(output, images)
  assert np.mean(ids == served) >= FLOAT16_AGREEMENT
  saved_iou, file_iou = _printed(out, 'eval mean IoU')
  assert saved_iou == pytest.approx(_mean_iou(true_ids, served, valid), abs=1e-4)
  assert file_iou == pytest.approx(_mean_iou(true_ids, ids, valid), abs=IOU_TOLERANCE)
  assert 'target within 0.2' in out


@pytest.mark.e2e
def test_int8_file_is_integer_and_its_iou_is_reported(
  pushed, tiny_demo_data, eval_split, tmp_path, capfd
):
  output = tmp_path / 'model_int8.tflite'
  status, out, err = _export(
    capfd, pushed, tiny_demo_data, output, '--quantize', 'int8', '--calibration-records', '8'
  )
  assert status == 0, err
  images, _, true_ids, valid = eval_split
  ids, interpreter = _class_ids(output, images)
  assert any(t['dtype'] == np.int8 for t in interpreter.get_tensor_details())
  _, file_iou = _printed(out, 'eval mean IoU')
  assert file_iou == pytest.approx(_mean_iou(true_ids, ids, valid), abs=IOU_TOLERANCE)
  saved_mib, file_mib = _printed(out, 'size')
  assert file_mib == pytest.approx(output.stat().st_size / 2**20, abs=0.01)
  assert file_mib < saved_mib
  assert 'calibrated on 8 records' in out
  assert list(tmp_path.iterdir()) == [output]  # no temporary file left beside it


@pytest.mark.parametrize(
  'case, status, words',
  [
    ('no model', 2, '--model'),
    ('not a model', 2, 'neither a SavedModel nor a folder of numbered versions'),
    ('no records', 2, '--eval-data'),
    ('unreadable records', 1, 'part.tfrecord: not a readable TFRecord file'),
    ('unwritable output', 2, '--output'),
    ('no calibration records', 2, '--calibration-records'),
  ],
)
def test_bad_input_is_one_line_and_writes_nothing(
  tiny_demo_data, tmp_path, capfd, case, status, words
):
  # What the checks before loading look for: a version folder holding saved_model.pb.
  model, data_root, output = tmp_path / 'model', tiny_demo_data, tmp_path / 'out' / 'model.tflite'
  (model / '1').mkdir(parents=True)
  (model / '1' / 'saved_model.pb').write_bytes(b'')
  (tmp_path / 'out').mkdir()
  if case == 'no model':
    model = tmp_path / 'nothing'
  elif case == 'not a model':
    model = tmp_path / 'empty model'
    model.mkdir()
  elif case == 'no records':
    data_root = tmp_path / 'empty'
    (data_root / 'eval').mkdir(parents=True)
  elif case == 'unreadable records':
    data_root = tmp_path / 'broken'
    (data_root / 'eval').mkdir(parents=True)
    (data_root / 'eval' / 'part.tfrecord').write_bytes(b'not a TFRecord file at all')
  elif case == 'unwritable output':
    output = tmp_path / 'missing folder' / 'model.tflite'
  flags = ['--quantize', 'int8', '--calibration-records', '0'] if 'calibration' in case else []
  returned, out, err = _export(capfd, model, data_root, output, *flags)
  assert returned == status
  assert len(err.strip().splitlines()) == 1 and err.startswith('iouseg export: error: ')
  assert words in err
  assert out == ''
  assert list((tmp_path / 'out').iterdir()) == []


def test_help_lists_the_choices(capsys):
  with pytest.raises(SystemExit) as exited:
    cli.main(['export', '--help'])
  assert exited.value.code == 0
  text = capsys.readouterr().out
  for flag in (
    '--model',
    '--format',
    '--quantize',
    '--output',
    '--eval-data',
    '--calibration-data',
  ):
    assert flag in text
  assert 'none,float16,int8' in text.replace(' ', '')
