"""The class colours of every picture of a mask: TensorBoard's predicted masks and `iouseg report`.

Background is black and ignored pixels white; foreground classes take matplotlib's tab10 in order.
"""

import numpy as np

# matplotlib's tab10, for the foreground classes in order; more classes than colours reuse them.
_FOREGROUND = (
  '#1f77b4',
  '#ff7f0e',
  '#2ca02c',
  '#d62728',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#7f7f7f',
  '#bcbd22',
  '#17becf',
)
IGNORE_COLOUR = (255, 255, 255)


def class_colours(num_classes: int) -> np.ndarray:
  """uint8 [C, 3] RGB; class 0 (background) black."""
  hexes = [_FOREGROUND[(k - 1) % len(_FOREGROUND)] for k in range(1, num_classes)]
  return np.array(
    [(0, 0, 0)] + [tuple(int(h[i : i + 2], 16) for i in (1, 3, 5)) for h in hexes], dtype=np.uint8
  )
