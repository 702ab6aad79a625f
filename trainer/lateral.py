"""Classes with a side, and the augmentation that would mirror or turn them.

A horizontal flip makes a left lung look like a right one. When its label keeps saying "left", the
model is taught that the two sides are one class and confuses them. Two guards stop that:

* by name (`named_pairs`): class names that name sides (`left_lung`/`right_lung`, `kidney_l`/
  `kidney_r`, `lh`/`rh`, ...) pair up, and a mirroring augmentation swaps each pair without being
  told (`TrainerConfig.flip_swap_pairs`);
* by data (`positions_from_stats`, `guard_problems`): Transform's analyzers sum each class's pixel
  positions over the train split (`transform.preprocessing.label_position_sums`); a class whose
  pixels sit mostly on one side, in no swap pair, stops the Trainer before it trains while a flip
  (or a quarter turn) would move it to the other side, with the fix in one line.

Pure Python (no TensorFlow): the flag checks use the name matcher before anything is imported.
"""

import dataclasses
import re

import numpy as np

# The side each side word names; any of `_ - .` or a space separates words.
SIDE_WORDS = {
  'left': 'left',
  'l': 'left',
  'lh': 'left',
  'right': 'right',
  'r': 'right',
  'rh': 'right',
}
_SEPARATORS = re.compile(r'[_\-. ]+')
# `flip_swap` value that says no class has a side: nothing is swapped and no guard runs.
NO_SWAP = 'none'
# A class is on one side when its mean position (0..1 across the image) is outside this range and
# most of its pixels lie on that half.
CENTRE_RANGE = (0.35, 0.65)

# Rows of the per-class position sums of `transform.preprocessing.label_position_sums`: pixel count,
# sums of x, x^2, y, y^2 (x, y: pixel centre / content width or height), pixels left of, right of,
# above and below the centre line.
STAT_ROWS = ('count', 'sum_x', 'sum_x2', 'sum_y', 'sum_y2', 'left', 'right', 'top', 'bottom')


def _side_and_key(name: str):
  """('left' | 'right', the name's other words) when a word of the name is a side word, else None."""
  words = [word for word in _SEPARATORS.split(name.strip().lower()) if word]
  for i, word in enumerate(words):
    if word in SIDE_WORDS:
      return SIDE_WORDS[word], tuple(words[:i] + words[i + 1 :])
  return None


def named_pairs(names) -> tuple:
  """((left id, right id), ...): the classes whose names differ only by a side word, e.g.
  `left_lung`/`right_lung`, `Kidney-L`/`Kidney-R`, `lh`/`rh` (case-insensitive). A key with more
  than one left or right name pairs nothing: which goes with which is not said."""
  sides = {}
  for k, name in enumerate(names):
    found = _side_and_key(name)
    if found:
      side, key = found
      sides.setdefault(key, {}).setdefault(side, []).append(k)
  pairs = [
    (by_side['left'][0], by_side['right'][0])
    for by_side in sides.values()
    if len(by_side.get('left', ())) == 1 and len(by_side.get('right', ())) == 1
  ]
  return tuple(sorted(pairs))


def merge_pairs(given: tuple, named: tuple, names) -> tuple:
  """The pairs a mirror swaps: those `given` (`--flip-swap`) plus those `named`. ValueError, one
  line, when a class is paired differently by the two."""
  partner = {}
  for a, b in given:
    partner[a], partner[b] = b, a
  merged = list(given)
  for left, right in named:
    if left in partner or right in partner:
      if partner.get(left) != right:
        taken = left if left in partner else right
        raise ValueError(
          f'flip_swap pairs {names[taken]} with {names[partner[taken]]}, but the class names '
          f'pair {names[left]} with {names[right]}: give flip_swap {left}:{right}, or '
          f"'{NO_SWAP}' to swap nothing"
        )
      continue
    merged.append((left, right))
  return tuple(merged)


def pair_text(pairs, names) -> str:
  """'left_lung<->right_lung, ...' ('' for no pairs)."""
  return ', '.join(f'{names[a]}<->{names[b]}' for a, b in pairs)


@dataclasses.dataclass(frozen=True)
class ClassPosition:
  """Where one class's labelled pixels lie in the train images, positions 0..1 across each
  image's content (0: left or top edge)."""

  count: float
  mean_x: float
  std_x: float
  mean_y: float
  std_y: float
  left: float  # share of its pixels left of the centre line
  right: float
  top: float
  bottom: float

  def side(self, axis: str) -> str | None:
    """'left'/'right' ('horizontal') or 'top'/'bottom' ('vertical') when the class sits on that
    side, else None."""
    mean, (low_side, high_side) = (
      (self.mean_x, ('left', 'right')) if axis == 'horizontal' else (self.mean_y, ('top', 'bottom'))
    )
    if not self.count:
      return None
    if mean < CENTRE_RANGE[0] and getattr(self, low_side) > 0.5:
      return low_side
    if mean > CENTRE_RANGE[1] and getattr(self, high_side) > 0.5:
      return high_side
    return None


def positions_from_stats(stats) -> list:
  """[len(STAT_ROWS), num_classes] position sums -> one `ClassPosition` per class."""
  stats = np.asarray(stats, np.float64).reshape(len(STAT_ROWS), -1)
  rows = dict(zip(STAT_ROWS, stats))
  positions = []
  for k in range(stats.shape[1]):
    n = rows['count'][k]
    if n <= 0:
      positions.append(ClassPosition(0.0, *[float('nan')] * 4, *[0.0] * 4))
      continue
    mean_x, mean_y = rows['sum_x'][k] / n, rows['sum_y'][k] / n
    positions.append(
      ClassPosition(
        count=float(n),
        mean_x=float(mean_x),
        std_x=float(np.sqrt(max(rows['sum_x2'][k] / n - mean_x**2, 0.0))),
        mean_y=float(mean_y),
        std_y=float(np.sqrt(max(rows['sum_y2'][k] / n - mean_y**2, 0.0))),
        **{side: float(rows[side][k] / n) for side in ('left', 'right', 'top', 'bottom')},
      )
    )
  return positions


def _where(position: ClassPosition, axis: str, side: str) -> str:
  mean = position.mean_x if axis == 'horizontal' else position.mean_y
  name = 'x' if axis == 'horizontal' else 'y'
  share = getattr(position, side)
  return f'on the {side} (mean {name} {mean:.2f}, {share:.0%} of its pixels on that half)'


def _proposed_pairs(sided: dict, positions, low: str, high: str) -> list:
  """Classes on opposite sides, paired largest with largest: the swap pairs to propose."""

  def on(side):
    return sorted((k for k, s in sided.items() if s == side), key=lambda k: -positions[k].count)

  return list(zip(on(low), on(high)))


def guard_problems(positions, names, augmentation, swap_pairs) -> list:
  """One line per augmentation that would move a class with a side to another side, with the fix;
  empty when none would. `augmentation` is an `AugmentationConfig`; classes in `swap_pairs` are
  swapped by a mirror, so only the quarter turn can still move them."""
  if not augmentation.augment or augmentation.flip_swap.strip().lower() == NO_SWAP:
    return []
  swapped = {k for pair in swap_pairs for k in pair}
  checks = []  # (what moves the class, axis, the flag that turns it off, swap pairs help)
  if augmentation.horizontal_flip:
    checks.append(('--horizontal-flip mirrors', 'horizontal', '--no-horizontal-flip', True))
  if augmentation.vertical_flip:
    checks.append(('--vertical-flip mirrors', 'vertical', 'no --vertical-flip', True))
  if augmentation.rotate90:
    for axis in ('horizontal', 'vertical'):
      checks.append(('--rotate90 turns', axis, 'no --rotate90', False))
  problems = []
  for moves, axis, turn_off, swap_helps in checks:
    sided = {
      k: position.side(axis)
      for k, position in enumerate(positions)
      if position.side(axis) and not (swap_helps and k in swapped)
    }
    if not sided:
      continue
    where = ', '.join(f'{names[k]} {_where(positions[k], axis, s)}' for k, s in sided.items())
    low, high = ('left', 'right') if axis == 'horizontal' else ('top', 'bottom')
    fixes = []
    proposed = _proposed_pairs(sided, positions, low, high) if swap_helps else []
    if proposed:
      fixes.append(
        '--flip-swap '
        + ','.join(f'{a}:{b}' for a, b in sorted((min(p), max(p)) for p in proposed))
        + f' ({pair_text(proposed, names)})'
      )
    elif swap_helps:
      fixes.append('--flip-swap A:B naming its opposite class')
    fixes.append(turn_off)
    fixes.append(f'--flip-swap {NO_SWAP} if no class has a side (this check is then off)')
    them = 'it' if len(sided) == 1 else 'them'
    problems.append(
      f'{where} of the train images, and {moves} {them} unswapped, teaching the model that the '
      'sides are one: pass ' + ', or '.join(fixes)
    )
  return problems
