"""Keeps AutoGraph out of tf_keras's own code, as TensorFlow keeps it out of `keras`'s.

AutoGraph rewrites the Python of every function a `tf.function` calls, unless a rule in
`tensorflow/python/autograph/core/config.py` names its module. TensorFlow 2.16 names `keras` but
not `tf_keras`, the package Keras 2 is installed as since 2.16 (`TF_USE_LEGACY_KERAS=1`), so each
traced train, test or predict step rewrote tf_keras's layer, loss, metric and optimizer code,
statement by statement, before tracing it. Keras's code is written to be traced as it is (it is
never converted under the name `keras`), and later TensorFlow releases add the rule themselves.
Our own functions (losses, augmentation) are still converted.

Without the rewrite the first, traced `fit` step is much shorter and the steps after it cost the
same; `benchmarks/tracing.py` measures both, and docs/performance.md holds the figures.
"""

from tensorflow.python.autograph.core import config as autograph_config


def skip_tf_keras_conversion() -> None:
  """Adds the `tf_keras` rule once (AutoGraph reads the rules at each conversion, as TensorFlow's
  own `converter_testing` relies on); process-wide, like every AutoGraph rule."""
  rules = autograph_config.CONVERSION_RULES
  if not any(
    isinstance(rule, autograph_config.DoNotConvert) and rule.matches('tf_keras') for rule in rules
  ):
    autograph_config.CONVERSION_RULES = rules + (autograph_config.DoNotConvert('tf_keras'),)
