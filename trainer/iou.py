"""Dataset-level IoU from a confusion matrix: the definition every metric in the project reduces to."""
import numpy as np


def confusion_matrix(true_ids: np.ndarray, pred_ids: np.ndarray, valid: np.ndarray,
                     num_classes: int) -> np.ndarray:
  """[num_classes, num_classes] counts, rows = ground truth, columns = prediction, valid pixels only."""
  t = true_ids[valid].astype(np.int64)
  p = pred_ids[valid].astype(np.int64)
  return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_iou(matrix: np.ndarray) -> np.ndarray:
  """TP / (TP + FP + FN) per class; NaN for a class absent from both labels and predictions."""
  tp = np.diag(matrix).astype(np.float64)
  denominator = matrix.sum(axis=0) + matrix.sum(axis=1) - tp
  with np.errstate(invalid='ignore', divide='ignore'):
    return np.where(denominator > 0, tp / denominator, np.nan)


def mean_iou(matrix: np.ndarray) -> float:
  """Mean over the classes that occur in labels or predictions (absent classes do not drag it to 0)."""
  iou = per_class_iou(matrix)
  return float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float('nan')
