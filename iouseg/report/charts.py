"""The report's figures, drawn with matplotlib (Agg) and embedded as inline SVG.

SVG keeps the page one file and lets a reader (and the tests) find each element: every bar carries an
id, `bar-<model>-<class index>`, and text stays text.
"""

import io
import math

import matplotlib

matplotlib.use('Agg')  # no display: the report is written by a command line tool
import matplotlib.pyplot as plt
import numpy as np

# Text as <text> elements, not paths: smaller files, and searchable.
matplotlib.rcParams['svg.fonttype'] = 'none'
CANDIDATE_COLOUR, BASELINE_COLOUR = '#1f77b4', '#b0b0b0'


def _svg(figure) -> str:
  buffer = io.StringIO()
  figure.savefig(buffer, format='svg', bbox_inches='tight')
  plt.close(figure)
  svg = buffer.getvalue()
  return svg[svg.index('<svg') :]  # inline: without the XML prolog and doctype


def class_iou_bars(
  class_names: list[str], candidate: list[float], baseline: list[float] | None
) -> str:
  """Grouped bars of per-class IoU, candidate beside baseline; an absent class (NaN) gets an empty
  bar labelled 'absent'."""
  models = [('candidate', candidate, CANDIDATE_COLOUR)]
  if baseline is not None:
    models.append(('baseline', baseline, BASELINE_COLOUR))
  width = 0.8 / len(models)
  figure, axes = plt.subplots(figsize=(max(5.0, 1.1 * len(class_names) + 2), 3.2))
  x = np.arange(len(class_names))
  for m, (model, values, colour) in enumerate(models):
    offset = (m - (len(models) - 1) / 2) * width
    for k, value in enumerate(values):
      absent = math.isnan(value)
      (bar,) = axes.bar(
        x[k] + offset,
        0.0 if absent else value,
        width,
        color=colour,
        label=model if k == 0 else None,
      )
      bar.set_gid(f'bar-{model}-{k}')
      axes.annotate(
        'absent' if absent else f'{value:.3f}',
        (x[k] + offset, 0.0 if absent else value),
        ha='center',
        va='bottom',
        fontsize=7,
        xytext=(0, 2),
        textcoords='offset points',
      )
  axes.set_xticks(x, class_names)
  axes.set_ylim(0, 1.08)
  axes.set_ylabel('IoU')
  axes.legend(
    loc='lower center', bbox_to_anchor=(0.5, 1.0), ncol=len(models), fontsize=8, frameon=False
  )
  axes.spines[['top', 'right']].set_visible(False)
  return _svg(figure)


def confusion_heatmap(matrix: np.ndarray, class_names: list[str]) -> str:
  """Rows ground truth, columns prediction; colour: the share of the row (recall-normalised), text:
  the pixel count TFMA reports."""
  rows = matrix.sum(axis=1, keepdims=True)
  shares = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
  size = 1.2 + 0.75 * len(class_names)
  figure, axes = plt.subplots(figsize=(size + 1.2, size))
  image = axes.imshow(shares, cmap='Blues', vmin=0, vmax=1)
  for (i, j), count in np.ndenumerate(matrix):
    axes.text(
      j,
      i,
      str(count),
      ha='center',
      va='center',
      fontsize=8,
      color='white' if shares[i, j] > 0.6 else 'black',
      gid=f'cell-{i}-{j}',
    )
  ticks = np.arange(len(class_names))
  axes.set_xticks(ticks, class_names, rotation=30, ha='right')
  axes.set_yticks(ticks, class_names)
  axes.set_xlabel('predicted')
  axes.set_ylabel('ground truth')
  figure.colorbar(image, ax=axes, fraction=0.046, label='share of the ground-truth row')
  return _svg(figure)
