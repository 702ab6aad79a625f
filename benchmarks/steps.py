"""Shared by the training benchmarks: steady-state training throughput of a Keras model.

Each measurement is one `fit` of `warmup + steps` steps; the warm-up steps (tracing, the input
pipeline filling its buffers) are left out of the clock, so the figure is what a long run sustains.
"""

import statistics
import time

import tf_keras


class _StepClock(tf_keras.callbacks.Callback):
  """Time from the end of step `warmup` to the end of the last step."""

  def __init__(self, warmup: int):
    super().__init__()
    self._warmup = warmup
    self.start = self.end = None

  def on_train_batch_end(self, batch, logs=None):
    if batch + 1 == self._warmup:
      self.start = time.perf_counter()
    self.end = time.perf_counter()


def images_per_second(
  model: tf_keras.Model, dataset, batch_size: int, steps: int, warmup: int
) -> float:
  clock = _StepClock(warmup)
  model.fit(dataset, epochs=1, steps_per_epoch=warmup + steps, callbacks=[clock], verbose=0)
  return steps * batch_size / (clock.end - clock.start)


def interleaved(measures: dict, repeats: int) -> dict:
  """{name: median images/s}: the measures run in turns (A B A B ...), so that a slow spell of a
  shared machine hits every one of them, and the median drops the outlier turn."""
  results = {name: [] for name in measures}
  for _ in range(repeats):
    for name, measure in measures.items():
      results[name].append(measure())
  return {name: statistics.median(values) for name, values in results.items()}
