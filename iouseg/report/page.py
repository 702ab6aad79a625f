"""The report's HTML: one file, no script, figures inline (SVG) and gallery images as base64 PNGs.

Every metric is printed from the run summary, i.e. from the TFMA output; each number's cell carries
the exact value in `data-value`, so a reader's tools (and the tests) can compare it with TFMA's.
"""

import base64
import datetime
import html
import math

import numpy as np

from components import iou_metric
from iouseg import run_summary
from iouseg.report import charts, gallery
from trainer.colours import IGNORE_COLOUR, class_colours

_DISPLAY_SIZE = 160  # pixels per gallery panel
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1150px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
#verdict { padding: 10px 16px; border-radius: 6px; }
#verdict.blessed { background: #e6f4ea; border: 1px solid #7cb987; }
#verdict.not-blessed { background: #fce8e6; border: 1px solid #e08a80; }
#verdict h2 { border: none; margin: 4px 0; }
.figures { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.gallery { display: flex; flex-wrap: wrap; gap: 14px; }
.gallery figure { margin: 0; font-size: 12px; }
.swatch { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px;
          vertical-align: middle; border: 1px solid #999; }
.note { color: #666; font-size: 13px; }
"""

_HEADLINE = (
  (iou_metric.MEAN_IOU, 'mean IoU'),
  (iou_metric.FREQUENCY_WEIGHTED_IOU, 'frequency-weighted IoU'),
  (iou_metric.PIXEL_ACCURACY, 'pixel accuracy'),
  (iou_metric.SOFT_IOU_LOSS, 'soft IoU loss'),
)


def _escape_html(text) -> str:
  return html.escape(str(text))


def _number(name: str, value: float | None, model: str) -> str:
  if value is None:
    return '<td class="num">–</td>'
  return (
    f'<td class="num" data-model="{model}" data-metric="{_escape_html(name)}" '
    f'data-value="{float(value)!r}">{run_summary.format_value(name, value)}</td>'
  )


def _change(candidate: float | None, baseline: float | None) -> str:
  if candidate is None or baseline is None or math.isnan(candidate) or math.isnan(baseline):
    return '<td class="num">–</td>'
  return f'<td class="num">{candidate - baseline:+.4f}</td>'


def _verdict(summary: run_summary.RunSummary) -> str:
  blessed = bool(summary.blessed)
  if summary.pushed:
    pushed = f'Pushed to {_escape_html(summary.pushed_destination)}' + (
      ' (already serving there; no new version).' if summary.already_serving else '.'
    )
  else:
    pushed = 'Not pushed.'
  reasons = ''.join(f'<li>{_escape_html(line)}</li>' for line in summary.failures)
  return (
    f'<section id="verdict" class="{"blessed" if blessed else "not-blessed"}">'
    f'<h2 id="verdict-text">{"Blessed" if blessed else "Not blessed"}</h2>'
    f'<p>{pushed}</p>'
    f'<p id="baseline">{_escape_html(run_summary.baseline_line(summary))}</p>'
    + (f'<p>Failed rules:</p><ul id="reasons">{reasons}</ul>' if reasons else '')
    + '</section>'
  )


def _metric_table(
  rows, candidate: dict[str, object], baseline: dict[str, object], table_id: str
) -> str:
  has_baseline = bool(baseline)
  head = (
    '<tr><th></th><th>candidate</th>'
    + ('<th>baseline</th><th>change</th>' if has_baseline else '')
    + '</tr>'
  )
  body = []
  for name, label in rows:
    value, base = candidate.get(name), baseline.get(name)
    cells = _number(name, value, run_summary.CANDIDATE) + (
      _number(name, base, run_summary.BASELINE) + _change(value, base) if has_baseline else ''
    )
    body.append(f'<tr data-row="{_escape_html(name)}"><td>{_escape_html(label)}</td>{cells}</tr>')
  return f'<table id="{table_id}">{head}{"".join(body)}</table>'


def _class_section(summary: run_summary.RunSummary) -> str:
  names = summary.class_names
  keys = [iou_metric.class_iou_name(name) for name in names]
  candidate = [float(summary.candidate_metrics[key]) for key in keys]
  baseline = (
    [float(summary.baseline_metrics[key]) for key in keys] if summary.baseline_metrics else None
  )
  table = _metric_table(
    list(zip(keys, names)), summary.candidate_metrics, summary.baseline_metrics, 'class-iou'
  )
  matrix = summary.candidate_metrics[iou_metric.CONFUSION_MATRIX]
  absent = [name for name, value in zip(names, candidate) if math.isnan(value)]
  note = (
    f'<p class="note" id="absent">Absent: {_escape_html(", ".join(absent))}: in neither the labels nor '
    'the predictions of the eval split, so without an IoU; left out of the mean IoU.</p>'
    if absent
    else ''
  )
  return (
    '<h2>Per-class IoU</h2><div class="figures">'
    f'<div id="class-iou-chart">{charts.class_iou_bars(names, candidate, baseline)}</div>'
    f'{table}</div>{note}'
    '<h2>Confusion matrix (candidate, pixels)</h2>'
    f'<div id="confusion-matrix">{charts.confusion_heatmap(matrix, names)}</div>'
  )


def _slices_section(summary: run_summary.RunSummary) -> str:
  rows = []
  for name, models in sorted(
    summary.slices.items(), key=lambda item: (item[0] != run_summary.OVERALL, item[0])
  ):
    candidate = models.get(run_summary.CANDIDATE, {})
    baseline = models.get(run_summary.BASELINE, {})
    cells = ''.join(_number(key, candidate.get(key), run_summary.CANDIDATE) for key, _ in _HEADLINE)
    if summary.baseline_metrics:
      cells += _number(
        iou_metric.MEAN_IOU, baseline.get(iou_metric.MEAN_IOU), run_summary.BASELINE
      ) + _change(candidate.get(iou_metric.MEAN_IOU), baseline.get(iou_metric.MEAN_IOU))
    rows.append(f'<tr data-slice="{_escape_html(name)}"><td>{_escape_html(name)}</td>{cells}</tr>')
  head = ''.join(f'<th>{_escape_html(label)}</th>' for _, label in _HEADLINE) + (
    '<th>baseline mean IoU</th><th>change</th>' if summary.baseline_metrics else ''
  )
  return (
    '<h2>Slices</h2><table id="slices"><tr><th>slice</th>'
    + head
    + '</tr>'
    + ''.join(rows)
    + '</table>'
  )


def _gallery_section(
  samples: list[gallery.Sample],
  num_classes: int,
  class_names: list[str],
  tfma_matrix: np.ndarray,
  limit: int,
) -> str:
  total = sum((s.matrix for s in samples), np.zeros_like(tfma_matrix))
  check = (
    'they add up to the confusion matrix in the TFMA output'
    if np.array_equal(total, tfma_matrix)
    else 'WARNING: they do not add up to the confusion matrix in the TFMA output'
  )
  colours = class_colours(num_classes)
  legend = ''.join(
    f'<span class="swatch" style="background: rgb{tuple(int(c) for c in colours[k])}">'
    f'</span>{_escape_html(name)}'
    for k, name in enumerate(class_names)
    if k > 0
  )
  shown = gallery.worst_first(samples)[:limit]
  figures = []
  for sample in shown:
    png = base64.b64encode(gallery.panel_png(sample, num_classes, _DISPLAY_SIZE)).decode()
    score = (
      'no labelled pixel' if math.isnan(sample.mean_iou) else f'mean IoU {sample.mean_iou:.4f}'
    )
    figures.append(
      f'<figure class="sample" data-iou="{sample.mean_iou!r}">'
      f'<img alt="{_escape_html(sample.name)}" src="data:image/png;base64,{png}">'
      f'<figcaption>{_escape_html(sample.name)}: {score}</figcaption></figure>'
    )
  return (
    '<h2>Eval images, worst first</h2>'
    f'<p class="note">Image | ground truth | prediction, {len(shown)} of {len(samples)} eval '
    "records. Per-image IoU is computed here from the model's predictions on the pixels TFMA "
    f'scored; {check}.</p>'
    f'<p>{legend}<span class="swatch" style="background: rgb{IGNORE_COLOUR}"></span>'
    f'ignored</p><div class="gallery" id="gallery">{"".join(figures)}</div>'
  )


def _links(summary: run_summary.RunSummary) -> str:
  items = [
    ('TFMA output (tfma.load_eval_result)', summary.evaluation_uri),
    ('TensorBoard logs (tensorboard --logdir)', summary.model_run_uri),
    ('candidate model', summary.model_uri),
    ('baseline model', summary.baseline_model_uri),
  ]
  return (
    '<h2>Links</h2><ul id="links">'
    + ''.join(
      f'<li>{_escape_html(label)}: <a href="file://{_escape_html(uri)}">{_escape_html(uri)}</a></li>'
      for label, uri in items
      if uri
    )
    + '</ul>'
  )


def render(
  summary: run_summary.RunSummary,
  samples: list[gallery.Sample],
  pipeline_name: str,
  gallery_limit: int,
) -> str:
  """The whole page for `summary` (a run whose Evaluator executed) and its gallery `samples`."""
  num_classes = len(summary.class_names)
  title = f'iouseg evaluation: {pipeline_name}, run {summary.run_id}'
  generated = datetime.datetime.now().strftime('%Y-%m-%d %H:%M')
  body = [
    f'<h1>{_escape_html(title)}</h1><p class="note">Written {generated} from ML Metadata and the '
    "Evaluator's TFMA output.</p>",
    _verdict(summary),
    '<h2>Eval split</h2>',
    _metric_table(_HEADLINE, summary.candidate_metrics, summary.baseline_metrics, 'headline'),
    _class_section(summary),
    _slices_section(summary),
    _gallery_section(
      samples,
      num_classes,
      summary.class_names,
      summary.candidate_metrics[iou_metric.CONFUSION_MATRIX],
      gallery_limit,
    ),
    _links(summary),
  ]
  return (
    f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_escape_html(title)}</title>'
    f'<style>{_STYLE}</style></head><body>{"".join(body)}</body></html>'
  )
