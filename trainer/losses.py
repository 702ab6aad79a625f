"""Segmentation losses for a sigmoid head over one-hot labels.

`lovasz_sigmoid_loss` is the Lovász extension of the Jaccard loss (Berman et al., CVPR 2018) in its
per-class sigmoid form: each class channel is a binary problem on its own sigmoid probabilities.

`soft_iou_loss` is the loss of M. A. Rahman and Y. Wang, "Optimizing Intersection-over-Union in Deep
Neural Networks for Image Segmentation", ISVC 2016 (Advances in Visual Computing, LNCS): with
sigmoid outputs X and one-hot labels Y, I = sum(X*Y), U = sum(X + Y - X*Y), loss = 1 - I/U, summed
over the whole batch (every pixel of every image and every class channel at once).
`soft_iou_per_image_loss` takes I/U of each image and averages them; `soft_iou_per_class_loss` does
so per class channel. Exactly 1 - I/U wherever U > 0; a term with U = 0 (no label and no prediction
mass: an all-ignore image, a class absent from both) has nothing to score and is left out, and with
no term left the loss is 0, with finite gradients.

All losses take `sample_weight` of shape [B, H, W] (or broadcastable to it): pixels of weight 0 (the
ignore label) count in neither sum.
"""

import functools
import inspect

import tensorflow as tf


def _pixel_weights(y_true, sample_weight):
  """Per-pixel weights [B, H, W, 1] to multiply into per-class terms."""
  if sample_weight is None:
    return tf.ones_like(y_true[..., :1])
  weight = tf.cast(sample_weight, y_true.dtype)
  return tf.reshape(weight, tf.concat([tf.shape(y_true)[:-1], [1]], axis=0))


def soft_iou_sums(y_true, y_pred, sample_weight=None, axis=None, dtype=tf.float32):
  """The soft IoU's I = sum(w*X*Y) and U = sum(w*(X + Y - X*Y)) over `axis`, computed in `dtype`.

  The losses sum in float32 (under mixed precision too); the exported model's `evaluation_sums`
  signature sums in float64, the precision TFMA then adds the per-example sums up in.
  """
  y_true = tf.cast(y_true, dtype)
  y_pred = tf.cast(y_pred, dtype)
  w = _pixel_weights(y_true, sample_weight)
  intersection = tf.reduce_sum(w * y_pred * y_true, axis=axis)
  union = tf.reduce_sum(w * (y_pred + y_true - y_pred * y_true), axis=axis)
  return intersection, union


def soft_iou_from_sums(intersection, union):
  """1 - mean of I/U over the terms with U > 0 (0 when there is none). The division never sees a
  zero union, so neither the value nor the gradient can be NaN."""
  scored = union > 0
  ratios = tf.where(scored, intersection / tf.where(scored, union, 1.0), 0.0)
  count = tf.reduce_sum(tf.cast(scored, tf.float32))
  return tf.where(count > 0, 1.0 - tf.reduce_sum(ratios) / tf.maximum(count, 1.0), 0.0)


def soft_iou_loss(y_true, y_pred, sample_weight=None):
  """The paper's batch-level soft IoU loss: 1 - I/U over the whole batch, a scalar."""
  return soft_iou_from_sums(*soft_iou_sums(y_true, y_pred, sample_weight, axis=None))


def soft_iou_per_image_loss(y_true, y_pred, sample_weight=None):
  """1 - mean over images of each image's soft IoU (I and U summed over its pixels and classes)."""
  return soft_iou_from_sums(*soft_iou_sums(y_true, y_pred, sample_weight, axis=[1, 2, 3]))


def soft_iou_per_class_loss(y_true, y_pred, sample_weight=None):
  """1 - mean over classes of each class's soft IoU, each class summed over the whole batch."""
  return soft_iou_from_sums(*soft_iou_sums(y_true, y_pred, sample_weight, axis=[0, 1, 2]))


def sigmoid_cross_entropy_loss(y_true, y_pred, sample_weight=None):
  """Per-channel binary cross-entropy of the sigmoid head, averaged over weighted pixels."""
  y_true = tf.cast(y_true, tf.float32)
  y_pred = tf.clip_by_value(tf.cast(y_pred, tf.float32), 1e-7, 1.0 - 1e-7)
  w = _pixel_weights(y_true, sample_weight)
  bce = -(y_true * tf.math.log(y_pred) + (1.0 - y_true) * tf.math.log(1.0 - y_pred))
  channels = tf.cast(tf.shape(y_true)[-1], tf.float32)
  return tf.reduce_sum(w * bce) / tf.maximum(tf.reduce_sum(w) * channels, 1.0)


def lovasz_grad(gt_sorted):
  """Gradient of the Lovász extension of the Jaccard loss w.r.t. errors sorted in decreasing order
  (Berman et al., Alg. 1): the Jaccard loss of each prefix of the sorted pixels, differenced."""
  gts = tf.reduce_sum(gt_sorted)
  intersection = gts - tf.cumsum(gt_sorted)
  union = gts + tf.cumsum(1.0 - gt_sorted)
  jaccard = 1.0 - intersection / union
  return tf.concat([jaccard[:1], jaccard[1:] - jaccard[:-1]], axis=0)


def _lovasz_one_class(probabilities, labels):
  errors = tf.abs(labels - probabilities)
  errors_sorted, order = tf.math.top_k(errors, k=tf.size(errors))
  return tf.tensordot(errors_sorted, lovasz_grad(tf.gather(labels, order)), axes=1)


def lovasz_sigmoid_loss(y_true, y_pred, sample_weight=None):
  """Mean over the classes present in the batch's labels of each class's Lovász hinge on its
  sigmoid probabilities, every pixel of the batch at once; pixels of weight 0 are left out. 0 when
  no class is present (an all-ignore batch)."""
  y_true = tf.cast(y_true, tf.float32)
  y_pred = tf.cast(y_pred, tf.float32)
  num_classes = y_true.shape[-1]
  keep = tf.reshape(_pixel_weights(y_true, sample_weight), [-1]) > 0
  labels = tf.boolean_mask(tf.reshape(y_true, [-1, num_classes]), keep)
  probabilities = tf.boolean_mask(tf.reshape(y_pred, [-1, num_classes]), keep)
  per_class = tf.stack(
    [_lovasz_one_class(probabilities[:, c], labels[:, c]) for c in range(num_classes)]
  )
  present = tf.cast(tf.reduce_sum(labels, axis=0) > 0, tf.float32)
  return tf.reduce_sum(per_class * present) / tf.maximum(tf.reduce_sum(present), 1.0)


def _plus_cross_entropy(iou_loss, y_true, y_pred, sample_weight, cross_entropy_weight: float):
  """`cross_entropy_weight` x sigmoid cross-entropy + `iou_loss`."""
  return cross_entropy_weight * sigmoid_cross_entropy_loss(
    y_true, y_pred, sample_weight
  ) + iou_loss(y_true, y_pred, sample_weight)


def cross_entropy_plus_soft_iou_loss(
  y_true, y_pred, sample_weight=None, cross_entropy_weight: float = 1.0
):
  """`cross_entropy_weight` x sigmoid cross-entropy + the batch-level soft IoU loss."""
  return _plus_cross_entropy(soft_iou_loss, y_true, y_pred, sample_weight, cross_entropy_weight)


def cross_entropy_plus_soft_iou_per_class_loss(
  y_true, y_pred, sample_weight=None, cross_entropy_weight: float = 1.0
):
  """`cross_entropy_weight` x sigmoid cross-entropy + the per-class soft IoU loss: nnU-Net's
  cross-entropy + Dice compound, with the per-class soft IoU in the place of Dice."""
  return _plus_cross_entropy(
    soft_iou_per_class_loss, y_true, y_pred, sample_weight, cross_entropy_weight
  )


# The losses by name, each with its function: the one place a loss is named.
LOSSES = {
  'soft_iou': soft_iou_loss,
  'soft_iou_per_image': soft_iou_per_image_loss,
  'soft_iou_per_class': soft_iou_per_class_loss,
  'lovasz': lovasz_sigmoid_loss,
  'cross_entropy': sigmoid_cross_entropy_loss,
  'cross_entropy+soft_iou': cross_entropy_plus_soft_iou_loss,
  'cross_entropy+soft_iou_per_class': cross_entropy_plus_soft_iou_per_class_loss,
}
# 'FIRST>SECOND': FIRST for the first `loss_switch` of the train steps, SECOND for the rest.
# Berman et al. (Lovász-Softmax, CVPR 2018) start multi-class models on cross-entropy and then
# optimise the IoU surrogate; these are the IoU losses that follow cross-entropy that way.
SWITCHED_LOSSES = {
  f'cross_entropy>{name}': ('cross_entropy', name)
  for name in ('soft_iou', 'soft_iou_per_image', 'soft_iou_per_class', 'lovasz')
}
# The `--loss` flag's values.
LOSS_NAMES = tuple(LOSSES) + tuple(SWITCHED_LOSSES)


def _named_loss(name: str, cross_entropy_weight: float):
  loss = LOSSES[name]
  if 'cross_entropy_weight' in inspect.signature(loss).parameters:
    return functools.partial(loss, cross_entropy_weight=cross_entropy_weight)
  return loss


def switched_loss(first, second, step, switch_step: int):
  """`first` while the variable `step` (the optimizer's iteration count) is below `switch_step`,
  `second` from then on. Only the branch taken is computed; a resumed run switches at the same step
  because the optimizer's iterations are restored with it."""

  def loss(y_true, y_pred, sample_weight=None):
    return tf.cond(
      step < switch_step,
      lambda: first(y_true, y_pred, sample_weight),
      lambda: second(y_true, y_pred, sample_weight),
    )

  return loss


def get_loss(name: str, cross_entropy_weight: float = 1.0, step=None, switch_step=None):
  """The loss function `fn(y_true, y_pred, sample_weight=None)` for a `--loss` flag value;
  `cross_entropy_weight` goes to the losses that have a cross-entropy term. A 'FIRST>SECOND' name
  needs `step` (a variable counting train steps) and `switch_step`."""
  if name in SWITCHED_LOSSES:
    if step is None or switch_step is None:
      raise ValueError(
        f'loss {name!r} switches losses during training: it needs the step counter '
        "and the step to switch at (the run's total train steps)"
      )
    first, second = SWITCHED_LOSSES[name]
    return switched_loss(
      _named_loss(first, cross_entropy_weight),
      _named_loss(second, cross_entropy_weight),
      step,
      switch_step,
    )
  if name not in LOSSES:
    raise ValueError(f'unknown loss {name!r}; choose one of {", ".join(LOSS_NAMES)}')
  return _named_loss(name, cross_entropy_weight)
