"""trainer/config.py: one settings tree, grouped by concern. Flat names route to their groups, the
nested dict survives JSON, unknown names are refused by name, each rule is checked in one place,
and the flags are generated group by group from the same fields."""

import argparse
import dataclasses
import json
import math

import pytest

from pipeline import flags
from trainer import augment
from trainer.config import (
  GROUPS,
  AugmentationConfig,
  LossConfig,
  ModelConfig,
  OptimizerConfig,
  RuntimeConfig,
  TrainerConfig,
)
from transform.config import TransformConfig


def test_from_flat_routes_each_name_to_its_group():
  config = TrainerConfig.from_flat(
    image_size=32, learning_rate=1e-3, horizontal_flip=False, depth=2, loss='lovasz', batch_size=8
  )
  assert config.data == TransformConfig(image_size=32)
  assert config.optimizer == OptimizerConfig(learning_rate=1e-3)
  assert config.augmentation == AugmentationConfig(horizontal_flip=False)
  assert config.model == ModelConfig(depth=2)
  assert config.losses == LossConfig(loss='lovasz')
  assert config.runtime == RuntimeConfig(batch_size=8)
  assert TrainerConfig.from_flat() == TrainerConfig()


def test_replace_routes_the_same_way_and_returns_a_new_config():
  config = TrainerConfig()
  replaced = config.replace(learning_rate=1e-2, base_filters=32, seed=3)
  assert (replaced.optimizer.learning_rate, replaced.model.base_filters, replaced.runtime.seed) == (
    1e-2,
    32,
    3,
  )
  assert config == TrainerConfig()  # frozen: the original is unchanged
  assert replaced.replace(learning_rate=3e-3, base_filters=16, seed=0) == config
  assert config.replace() == config


def test_flat_names_every_setting_once():
  config = TrainerConfig.from_flat(image_size=32, depth=2, photometric=True)
  flat = config.flat()
  assert len(flat) == sum(len(dataclasses.fields(settings)) for _, settings in GROUPS)
  assert (flat['image_size'], flat['depth'], flat['photometric']) == (32, 2, True)
  assert TrainerConfig.from_flat(**flat) == config


def test_to_dict_and_from_dict_round_trip_through_json():
  config = TrainerConfig.from_flat(
    num_classes=6,
    image_size=32,
    depth=2,
    flip_swap='1:2',
    lr_schedule='poly',
    keep_last_weights=True,
  )
  nested = config.to_dict()
  assert list(nested) == [name for name, _ in GROUPS]
  assert nested['data']['num_classes'] == 6 and nested['optimizer']['lr_schedule'] == 'poly'
  assert TrainerConfig.from_dict(nested) == config
  assert TrainerConfig.from_dict(json.loads(json.dumps(nested, sort_keys=True))) == config
  assert TrainerConfig.from_dict({}) == TrainerConfig()
  assert TrainerConfig.from_dict({'model': {'depth': 2}}) == TrainerConfig.from_flat(depth=2)


@pytest.mark.parametrize(
  'make,name',
  [
    (lambda: TrainerConfig.from_flat(nosuch=1), 'nosuch'),
    (lambda: TrainerConfig().replace(learning_rat=1e-3), 'learning_rat'),
    (lambda: TrainerConfig.from_dict({'modle': {}}), 'modle'),
    (lambda: TrainerConfig.from_dict({'model': {'width': 3}}), 'width'),
    # A flat dict is not a nested one: its names are no groups.
    (lambda: TrainerConfig.from_dict({'learning_rate': 1e-3}), 'learning_rate'),
  ],
)
def test_unknown_names_are_refused_by_name(make, name):
  with pytest.raises(ValueError, match=name):
    make()


def test_a_group_must_be_its_settings_class():
  with pytest.raises(TypeError, match='model'):
    TrainerConfig(model={'depth': 2})


def test_image_size_multiple_of_two_to_the_depth_is_the_tree_s_rule():
  # Each group alone takes the values; together they are refused, naming both settings and a fix.
  assert TransformConfig(image_size=30).image_size == 30 and ModelConfig(depth=2).depth == 2
  with pytest.raises(ValueError, match=r'image_size 30 must be a multiple of 4.*depth.*28 or 32'):
    TrainerConfig(data=TransformConfig(image_size=30), model=ModelConfig(depth=2))
  with pytest.raises(ValueError, match='multiple of 8'):
    TrainerConfig.from_flat(image_size=64, depth=2).replace(image_size=100, depth=3)


def test_flip_swap_ids_below_num_classes_is_the_tree_s_rule():
  assert AugmentationConfig(flip_swap='4:5').flip_swap == '4:5'
  with pytest.raises(ValueError, match='below num_classes 4'):
    TrainerConfig(augmentation=AugmentationConfig(flip_swap='4:5'))
  config = TrainerConfig.from_flat(num_classes=6, flip_swap='4:5, class_1:class_2')
  assert config.flip_swap_pairs == ((4, 5), (1, 2))


@pytest.mark.parametrize('rate', [0.0, -1e-3, math.nan])
def test_learning_rate_must_be_positive(rate):
  with pytest.raises(ValueError, match='learning_rate must be > 0'):
    OptimizerConfig(learning_rate=rate)


@pytest.mark.parametrize(
  'make,name',
  [
    (lambda: ModelConfig(base_filters=0), 'base_filters'),
    (lambda: ModelConfig(depth=-1), 'depth'),
    (lambda: ModelConfig(head_init='ones'), 'head_init'),
    (lambda: AugmentationConfig(min_scale=2.0, max_scale=1.0), 'min_scale'),
    (lambda: LossConfig(loss_switch=1.5), 'loss_switch'),
    (lambda: LossConfig(cross_entropy_weight=-1.0), 'cross_entropy_weight'),
    (lambda: OptimizerConfig(warmup_steps=-1), 'warmup_steps'),
    (lambda: RuntimeConfig(batch_size=0), 'batch_size'),
    (lambda: RuntimeConfig(epochs=0), 'epochs'),
    (lambda: RuntimeConfig(cache_mib=-1), 'cache_mib'),
    (lambda: RuntimeConfig(distribution='tpu'), 'distribution'),
  ],
)
def test_each_group_checks_its_own_settings(make, name):
  with pytest.raises(ValueError, match=name):
    make()


def test_the_trainer_augments_with_the_defaults_of_augmentation_config():
  # AugmentOptions has no defaults of its own: every field comes from the config.
  assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(augment.AugmentOptions))
  defaults = AugmentationConfig()
  assert TrainerConfig().augmentation == defaults
  options = augment.AugmentOptions.from_config(TrainerConfig())
  assert options == augment.AugmentOptions(
    min_scale=1.0,
    max_scale=1.0,
    horizontal_flip=defaults.horizontal_flip,
    vertical_flip=defaults.vertical_flip,
    rotate90=defaults.rotate90,
    photometric=defaults.photometric,
    flip_swap=(),
  )
  assert defaults.augment and defaults.horizontal_flip and not defaults.random_scale


def _config_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser()
  flags.add_config_arguments(parser)
  return parser


def test_flags_come_group_by_group_with_their_flat_names():
  parser = _config_parser()
  text = parser.format_help()
  titles = (
    'data settings',
    'model settings',
    'augmentation settings',
    'loss settings',
    'optimiser settings',
    'runtime settings',
  )
  assert all(f'\n{title}' in text for title in titles)
  assert sorted(titles, key=text.index) == list(titles)
  defaults = flags.configs_from_args(parser.parse_args([]))
  assert defaults == TrainerConfig()
  config = flags.configs_from_args(
    parser.parse_args(
      [
        '--image-size',
        '32',
        '--depth',
        '2',
        '--no-horizontal-flip',
        '--vertical-flip',
        '--learning-rate',
        '1e-3',
        '--loss',
        'lovasz',
      ]
    )
  )
  assert isinstance(config.data, TransformConfig) and config.data.image_size == 32
  assert not config.augmentation.horizontal_flip and config.augmentation.vertical_flip
  assert (config.optimizer.learning_rate, config.losses.loss) == (1e-3, 'lovasz')
  assert not flags.configs_from_args(parser.parse_args(['--no-augment'])).augmentation.augment
  with pytest.raises(SystemExit):
    parser.parse_args(['--no-flip'])
