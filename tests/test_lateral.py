"""Classes with a side and the augmentation that mirrors them (trainer/lateral.py): the name matcher,
the flags, Transform's position analyzer against numpy, and the Trainer's guard on a transform graph
written by TFT's Beam implementation, for a lateral set, the demo set and the nuclei tiles."""

import glob
import json
import os
import subprocess
import sys

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import metadata_io

from iouseg import cli, demo_data
from iouseg.converters import convert
from trainer import augment, lateral, task
from trainer.config import TrainerConfig
from transform import data_format, features
from transform.config import TransformConfig
from transform.preprocessing import preprocessing_fn

from helpers import BENCHMARKS, SAMPLES, benchmark_module, tiny_model_flags, tiny_run_args

RAW_SPEC = data_format.raw_feature_spec()


# --- names ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
  'left,right',
  [
    ('left_lung', 'right_lung'),
    ('Lung_Left', 'Lung_Right'),
    ('l_eye', 'r_eye'),
    ('kidney-L', 'kidney-R'),
    ('hand.l', 'hand.r'),
    ('LH', 'RH'),
    ('left grey matter', 'right grey matter'),
    ('ctx-lh-precentral', 'ctx-rh-precentral'),
  ],
)
def test_names_that_name_sides_pair_up(left, right):
  names = ['background', right, 'heart', left]
  assert lateral.named_pairs(names) == ((3, 1),)


@pytest.mark.parametrize(
  'names',
  [
    ['background', 'leftover', 'rightover'],
    ['background', 'bright', 'bleft'],
    ['background', 'lefty', 'righty'],
    ['background', 'left_lung', 'right_kidney'],
    ['background', 'left', 'l', 'right'],  # two lefts for one right: which pair is not said
  ],
)
def test_near_misses_pair_nothing(names):
  assert lateral.named_pairs(names) == ()


NAMES = 'background,left_lung,right_lung,heart'


def test_named_pairs_are_swapped_without_being_told():
  config = TrainerConfig.from_flat(class_names=NAMES)
  assert config.flip_swap_pairs == ((1, 2),)
  options = augment.AugmentOptions.from_config(config)
  assert options.horizontal_flip and options.flip_swap == ((1, 2),)
  assert augment.describe(config) == 'horizontal flip; a mirror swaps left_lung<->right_lung'
  # Given both ways and agreeing (either order, ids or names): one pair.
  assert TrainerConfig.from_flat(class_names=NAMES, flip_swap='2:1').flip_swap_pairs == ((2, 1),)
  same = TrainerConfig.from_flat(class_names=NAMES, flip_swap='left_lung:right_lung')
  assert same.flip_swap_pairs == ((1, 2),)
  # 'none' says no class has a side: nothing swaps, and the summary says the check was off.
  off = TrainerConfig.from_flat(class_names=NAMES, flip_swap='none')
  assert off.flip_swap_pairs == () and augment.AugmentOptions.from_config(off).flip_swap == ()
  assert 'a mirror swaps no classes' in augment.describe(off)
  assert 'lateral-class check is off' in augment.describe(off)
  assert augment.describe(TrainerConfig.from_flat(class_names=NAMES, augment=False)) == 'none'


def test_the_flip_swap_help_says_named_sides_are_swapped(capsys):
  with pytest.raises(SystemExit):
    cli.main(['run', '--help'])
  help_text = ' '.join(capsys.readouterr().out.split())
  assert '--flip-swap FLIP_SWAP' in help_text
  for text in ('left_X/right_X', 'lh/rh', 'swapped without it', "'none': swap nothing"):
    assert text in help_text, text


def test_a_pair_given_both_ways_must_agree_at_parse_time(tiny_demo_data, tmp_path, capfd):
  returncode = cli.main(
    tiny_run_args(tmp_path, tiny_demo_data, '--class-names', NAMES, '--flip-swap', '1:3')
  )
  out, err = capfd.readouterr()
  assert returncode == 2 and out == ''
  lines = err.strip().splitlines()
  assert len(lines) == 1, err
  for text in (
    '--flip-swap',
    'left_lung with heart',
    'left_lung with right_lung',
    '--flip-swap 1:2',
  ):
    assert text in lines[0], (text, lines[0])
  assert list(tmp_path.iterdir()) == []  # nothing ran


# --- positions --------------------------------------------------------------------------------------


def _raw(image, mask, name):
  return {
    data_format.IMAGE_ENCODED: data_format.encode_png(image),
    data_format.MASK_ENCODED: data_format.encode_png(mask),
    data_format.IMAGE_FILENAME: name.encode(),
  }


def _expected_sums(masks, num_classes):
  """The position sums of `label_position_sums`, by numpy: positions are pixel centres over the
  mask's own width and height; the ignore label is no class and counts nowhere."""
  sums = np.zeros((len(lateral.STAT_ROWS), num_classes))
  for mask in masks:
    rows, cols = mask.shape
    y, x = np.meshgrid(
      (np.arange(rows) + 0.5) / rows, (np.arange(cols) + 0.5) / cols, indexing='ij'
    )
    for k in range(num_classes):
      at = mask == k
      xs, ys = x[at], y[at]
      sums[:, k] += [
        at.sum(),
        xs.sum(),
        (xs**2).sum(),
        ys.sum(),
        (ys**2).sum(),
        (xs < 0.5).sum(),
        (xs > 0.5).sum(),
        (ys < 0.5).sum(),
        (ys > 0.5).sum(),
      ]
  return sums


def _analyze(records, tmp_path, config):
  metadata = tft.DatasetMetadata.from_feature_spec(RAW_SPEC)
  with tft_beam.Context(temp_dir=str(tmp_path / 'tft')):
    (transformed, _), _ = (records, metadata) | tft_beam.AnalyzeAndTransformDataset(
      lambda inputs: preprocessing_fn(inputs, vars(config)), output_record_batches=False
    )
  return transformed


@pytest.mark.parametrize('resize', ['stretch', 'pad'])
def test_label_positions_match_numpy(resize, tmp_path):
  rng = np.random.default_rng(3)
  # Masks at the model size (stretch) or half as high (pad: the content is the top half), ids
  # 0..2 and the ignore label, which counts nowhere.
  shape = (16, 16) if resize == 'stretch' else (8, 16)
  masks = [rng.choice([0, 1, 2, 255], size=shape, p=[0.4, 0.3, 0.2, 0.1]) for _ in range(3)]
  masks[0][:, :8] = np.where(masks[0][:, :8] == 2, 1, masks[0][:, :8])  # not symmetric
  records = [
    _raw(rng.integers(0, 256, size=shape + (3,), dtype=np.uint8), m.astype(np.uint8), f'r{i}')
    for i, m in enumerate(masks)
  ]
  config = TransformConfig(image_size=16, num_classes=3, resize=resize)
  out = _analyze(records, tmp_path, config)
  expected = _expected_sums(masks, 3)
  for row in out:  # the same constant in every record
    np.testing.assert_allclose(
      np.asarray(row[features.LABEL_POSITIONS]).reshape(expected.shape), expected, rtol=1e-5
    )
  positions = lateral.positions_from_stats(expected)
  pixels = np.concatenate([np.argwhere(m == 1) for m in masks])
  np.testing.assert_allclose(positions[1].mean_x, ((pixels[:, 1] + 0.5) / 16).mean())
  np.testing.assert_allclose(positions[1].std_x, ((pixels[:, 1] + 0.5) / 16).std(), rtol=1e-6)


# --- the guard --------------------------------------------------------------------------------------


def write_lateral_split(path, count, seed, size=32):
  """The lateral set of `iouseg.demo_data` (a left-only and a right-only disc that look the same)
  at `size` px, as one TFRecord file."""
  demo_data.write_split(str(path), count, seed, size, data_format.DEFAULT_IGNORE_LABEL, 'lateral')


def _transform_output(train_files, tmp_path, config: TransformConfig):
  """The transform graph TFT's Beam implementation writes for the records of `train_files`, laid
  out as TFX's Transform exports it for the Trainer (transform_fn/, transformed_metadata/,
  metadata/)."""
  records = [
    {key: value.numpy() for key, value in tf.io.parse_single_example(r, RAW_SPEC).items()}
    for r in tf.data.TFRecordDataset(sorted(glob.glob(train_files))).as_numpy_iterator()
  ]
  metadata = tft.DatasetMetadata.from_feature_spec(RAW_SPEC)
  output = tmp_path / 'transform_graph'
  with beam.Pipeline() as pipeline, tft_beam.Context(temp_dir=str(tmp_path / 'tft')):
    transform_fn = (pipeline | beam.Create(records), metadata) | tft_beam.AnalyzeDataset(
      lambda inputs: preprocessing_fn(inputs, vars(config))
    )
    _ = transform_fn | tft_beam.WriteTransformFn(str(output))
  metadata_io.write_metadata(metadata, str(output / 'metadata'))  # the raw schema, as TFX writes it
  return tft.TFTransformOutput(str(output))


@pytest.fixture(scope='module')
def lateral_graph(tmp_path_factory):
  base = tmp_path_factory.mktemp('lateral')
  write_lateral_split(base / 'train.tfrecord', 12, seed=1)
  files = str(base / 'train.tfrecord')
  config = TransformConfig(image_size=32, num_classes=3)
  return files, _transform_output(files, base, config)


def test_guard_refuses_unnamed_lateral_classes_with_the_fix(lateral_graph):
  files, output = lateral_graph
  positions = task.label_positions(files, output)
  assert positions[1].mean_x < 0.35 and positions[1].left > 0.9
  assert positions[2].mean_x > 0.65 and positions[2].right > 0.9
  config = TrainerConfig.from_flat(image_size=32, num_classes=3)  # names class_0..class_2
  with pytest.raises(task.LateralClassError) as refused:
    task.check_lateral_classes(config, positions)
  message = str(refused.value)
  assert '\n' not in message
  for text in (
    'class_1 on the left',
    'class_2 on the right',
    '--horizontal-flip mirrors',
    '--flip-swap 1:2 (class_1<->class_2)',
    '--no-horizontal-flip',
  ):
    assert text in message, (text, message)
  # Each fix the message gives lets the run go on.
  for fix in (dict(flip_swap='1:2'), dict(horizontal_flip=False), dict(flip_swap='none')):
    task.check_lateral_classes(config.replace(**fix), positions)
  # Named sides are swapped, so they pass too.
  task.check_lateral_classes(config.replace(class_names='bg,left_disc,right_disc'), positions)
  # A quarter turn moves a class with a side whatever the swap pairs.
  with pytest.raises(task.LateralClassError, match='--rotate90 turns.*no --rotate90'):
    task.check_lateral_classes(config.replace(flip_swap='1:2', rotate90=True), positions)


def test_guard_vertical_flip_checks_up_and_down(lateral_graph):
  files, output = lateral_graph
  positions = task.label_positions(files, output)
  # The discs are spread from top to bottom: a vertical flip moves none of them to another side.
  config = TrainerConfig.from_flat(image_size=32, num_classes=3, flip_swap='1:2')
  task.check_lateral_classes(config.replace(vertical_flip=True), positions)
  # The same set turned a quarter: the classes are on top and at the bottom.
  turned = [
    lateral.ClassPosition(
      p.count, p.mean_y, p.std_y, p.mean_x, p.std_x, p.top, p.bottom, p.left, p.right
    )
    for p in positions
  ]
  unswapped = TrainerConfig.from_flat(image_size=32, num_classes=3, vertical_flip=True)
  with pytest.raises(task.LateralClassError, match='class_1 on the top.*--vertical-flip mirrors'):
    task.check_lateral_classes(unswapped, turned)


def test_guard_is_silent_on_the_demo_set(tmp_path):
  demo_data.write_demo_data(str(tmp_path / 'demo'), train_count=48, eval_count=1, size=48, seed=5)
  files = str(tmp_path / 'demo' / 'train' / '*')
  output = _transform_output(files, tmp_path, TransformConfig(image_size=48))
  positions = task.label_positions(files, output)
  config = TrainerConfig.from_flat(image_size=48, vertical_flip=True, rotate90=True)
  assert lateral.guard_problems(positions, config.data.names, config.augmentation, ()) == []


def test_guard_is_silent_on_the_nuclei_tiles(tmp_path):
  convert(SAMPLES / 'nuclei', tmp_path / 'nuclei', num_classes=2, shards=1)
  files = str(tmp_path / 'nuclei' / 'train' / '*')
  data = TransformConfig(image_size=128, channels=1, num_classes=2)
  positions = task.label_positions(files, _transform_output(files, tmp_path, data))
  assert positions[1].count > 0
  config = TrainerConfig.from_flat(
    image_size=128, channels=1, num_classes=2, vertical_flip=True, rotate90=True
  )
  assert lateral.guard_problems(positions, config.data.names, config.augmentation, ()) == []


# --- a run ------------------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def lateral_data(tmp_path_factory):
  root = tmp_path_factory.mktemp('lateral_data')
  for split, count, seed in (('train', 16, 1), ('eval', 8, 2)):
    (root / split).mkdir()
    write_lateral_split(root / split / 'lateral.tfrecord', count, seed)
  return root


def _run(base, data_root, *flags) -> tuple:
  """`iouseg run` of the tiny model on `data_root`: (exit status, its stdout)."""
  from helpers import iouseg_run_args

  argv = iouseg_run_args(base, data_root, 'lateral', train_steps=4) + [
    *tiny_model_flags(num_classes=3),
    *flags,
  ]
  return cli.main(argv)


@pytest.mark.e2e
def test_a_run_with_side_names_swaps_them_and_says_so(lateral_data, tmp_path, capfd):
  returncode = _run(tmp_path, lateral_data, '--class-names', 'background,left_disc,right_disc')
  out, err = capfd.readouterr()
  assert returncode == 0, out + err
  said = 'Augmentation: horizontal flip; a mirror swaps left_disc<->right_disc'
  assert said in out
  card = glob.glob(str(tmp_path / 'serving' / '*' / 'assets.extra' / 'model_card.md'))
  assert card, out
  with open(card[0], encoding='utf-8') as f:
    assert 'horizontal flip; a mirror swaps left_disc<->right_disc' in f.read()


@pytest.mark.e2e
def test_a_run_with_unnamed_side_classes_stops_before_training(lateral_data, tmp_path, capfd):
  returncode = _run(tmp_path, lateral_data)
  out, err = capfd.readouterr()
  assert returncode == 1
  error = [line for line in (out + err).splitlines() if line.startswith('Error: ')]
  assert len(error) == 1, out + err
  for text in (
    'LateralClassError',
    'class_1 on the left',
    '--flip-swap 1:2',
    '--no-horizontal-flip',
  ):
    assert text in error[0], (text, error[0])
  assert not os.path.exists(tmp_path / 'serving') or not os.listdir(tmp_path / 'serving')


def test_flip_swap_takes_ids_names_and_default_names():
  config = TrainerConfig.from_flat(
    num_classes=5, class_names='bg,a,b,c,d', flip_swap='a:b,class_3:4'
  )
  assert config.flip_swap_pairs == ((1, 2), (3, 4))
  with pytest.raises(ValueError, match="'e' is neither a class id"):
    TrainerConfig.from_flat(num_classes=5, class_names='bg,a,b,c,d', flip_swap='a:e')


@pytest.mark.slow
def test_lateral_study_quick_tables_every_recipe_against_the_default(tmp_path, monkeypatch):
  """`benchmarks/lateral_study.py --quick`: one row per recipe, each with the augmentation the
  summary would print, paired against the default run, and --render giving back the table."""
  study = benchmark_module(monkeypatch, 'lateral_study')
  script = str(BENCHMARKS / 'lateral_study.py')
  out, runs, rendered = tmp_path / 'table.md', tmp_path / 'runs.json', tmp_path / 'again.md'
  flags = ['--quick', '--image-size', '32', '--jobs', '1']
  subprocess.run(
    [sys.executable, script, *flags, '--out', str(out), '--json', str(runs)], check=True
  )
  rows = [
    [cell.strip() for cell in line.split('|')[1:-1]]
    for line in out.read_text().splitlines()
    if line.startswith('| ') and not line.startswith(('| recipe', '| ---'))
  ]
  assert [row[0] for row in rows] == list(study.RECIPES)
  said = {row[0]: row[1] for row in rows}
  assert said['default'] == 'horizontal flip; a mirror swaps left_disc<->right_disc'
  assert said['no-flip'] == 'none'
  assert said['flip-swap'] == 'horizontal flip; a mirror swaps class_1<->class_2'
  assert said['unswapped'].startswith('horizontal flip; a mirror swaps no classes')
  by_recipe = {run['recipe']: run for run in json.loads(runs.read_text())['results'][0]['runs']}
  for row in rows:
    if row[0] == 'default':
      assert row[3] == '—'
    else:  # one seed: the paired difference is the difference
      assert float(row[3].split('±')[0]) == pytest.approx(
        by_recipe[row[0]]['mean_iou'] - by_recipe['default']['mean_iou'], abs=1e-3
      )
  subprocess.run(
    [sys.executable, script, '--render', str(runs), '--out', str(rendered)], check=True
  )
  assert rendered.read_text() == out.read_text()
