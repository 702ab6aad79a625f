"""Large-image benchmark: training on native-resolution crops (`--resize none`) against stretching.

    .venv/bin/python benchmarks/large_images.py                   # 128 and 256 px, 300 steps each
    .venv/bin/python benchmarks/large_images.py --sizes 128 --steps 100 --train 12   # a quick look
    .venv/bin/python benchmarks/large_images.py --memory-only --train 4   # the memory table alone

Writes a synthetic set: scenes of --width x --height px on a textured background (two octaves of
smoothed noise) with thin lines 3 to 5 px wide (class 1, `line`) and small discs (class 2, `disc`,
6 to 30 px across) and squares (class 3, `square`, 6 to 30 px). For each model size S it runs the
project's Transform analyzers (TFT on Beam) and trains the Trainer's own model and feed
(`trainer.data.train_and_eval`, `trainer.task.compiled_model`) for the same steps, batch and model,
once with `--resize stretch` (every image squeezed to S x S) and once with `--resize none` (random
S x S crops at a random scale 0.5 to 2, the Trainer's `--random-scale`), then exports each with
`trainer.export` and segments the eval images through its serving signatures: `stretch` (the
prediction resized back), `none` + `whole` and `none` + `slide`. It prints the eval mean IoU and
per-class IoU at each image's own size (the Evaluator's `mean_iou`: one confusion matrix over the
split, `trainer.iou`), the seconds per eval image, and the peak resident memory of one prediction
at the smallest model size, each in a fresh process: `serving_slide` at --memory-sizes,
`serving_whole` at --whole-memory-sizes, `evaluation_sums` (a record with its mask, the model
exported with `slide`) at --eval-memory-sizes and (exported with `whole`) at the smallest of them,
with the ratio of the largest side's peak to the smallest's; `masks` (the model exported with
`slide`) at --memory-sizes beside `serving_slide`. The bounded predictions (`masks` and
`evaluation_sums` with `slide`) are held to the issue's target: the largest side peaks at no more
than 1.3 x the smallest's. `serving_slide` cannot be: it returns the probabilities of every pixel.

`--memory-only` leaves out the IoU table: the `none` model at the first size, trained
MEMORY_ONLY_STEPS steps (what is measured is memory, not quality), exported, and the memory rows.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

from trainer import data, export, iou, task
from trainer.config import TrainerConfig
from transform import data_format

import report_table
import tf_env  # noqa: F401  (first: sets up TensorFlow)
import trainer_input

CLASSES = ('background', 'line', 'disc', 'square')
IGNORE = data_format.DEFAULT_IGNORE_LABEL
# The train steps of `--memory-only`: enough for a model with trained batch-norm statistics.
MEMORY_ONLY_STEPS = 2
# The target for a bounded prediction: 16 x the pixels at no more than this x the peak.
BOUNDED_RATIO = 1.3
# The predictions that hold a bounded part of the image's per-pixel tensors (the rest return them).
BOUNDED = ('masks, slide', 'evaluation_sums, slide')


def _texture(rng, height: int, width: int) -> np.ndarray:
  """A grey-green background: smoothed noise at two scales, [H, W, 3] float in [0, 255]."""
  out = np.zeros((height, width, 3))
  for cell, strength in ((64, 60.0), (8, 25.0)):
    coarse = rng.normal(size=(height // cell + 2, width // cell + 2, 3))
    up = np.kron(coarse, np.ones((cell, cell, 1)))[:height, :width]
    out += strength * up
  return np.clip(out + np.array([110.0, 120.0, 100.0]), 0, 255)


def make_scene(rng, height: int, width: int):
  """(image uint8 [H, W, 3], mask uint8 [H, W]): lines, discs and squares on the texture."""
  image = _texture(rng, height, width)
  mask = np.zeros((height, width), np.uint8)
  rows, cols = np.mgrid[0:height, 0:width]
  for _ in range(rng.integers(4, 8)):  # thin lines across the scene
    y0, x0 = rng.uniform(0, height), rng.uniform(0, width)
    angle = rng.uniform(0, np.pi)
    distance = np.abs((cols - x0) * np.sin(angle) - (rows - y0) * np.cos(angle))
    on = distance < rng.uniform(1.5, 2.5)  # 3 to 5 px wide
    mask[on], image[on] = 1, np.array([200.0, 190.0, 170.0]) + rng.normal(0, 8, 3)
  for _ in range(rng.integers(40, 80)):  # small objects
    size = rng.uniform(6, 30)
    y, x = rng.uniform(0, height), rng.uniform(0, width)
    if rng.random() < 0.5:
      on, k, colour = (rows - y) ** 2 + (cols - x) ** 2 < (size / 2) ** 2, 2, (180.0, 60.0, 60.0)
    else:
      on = (np.abs(rows - y) < size / 2) & (np.abs(cols - x) < size / 2)
      k, colour = 3, (60.0, 70.0, 170.0)
    mask[on], image[on] = k, np.array(colour) + rng.normal(0, 12, 3)
  image += rng.normal(0, 6, image.shape)
  return np.clip(image, 0, 255).astype(np.uint8), mask


def write_split(path: str, count: int, height: int, width: int, seed: int) -> list:
  """`count` scenes as records; returns their (image PNG bytes, mask) pairs."""
  rng = np.random.default_rng(seed)
  pairs = []
  with tf.io.TFRecordWriter(path) as writer:
    for k in range(count):
      image, mask = make_scene(rng, height, width)
      png = tf.io.encode_png(image).numpy()
      writer.write(
        data_format.make_example(
          png, 'png', height, width, 3, f'{k}.png', data_format.encode_png(mask)
        ).SerializeToString()
      )
      pairs.append((png, mask))
  return pairs


def train_and_export(config: TrainerConfig, train_pattern, eval_pattern, steps, work) -> dict:
  """The Trainer's feed and model for `steps` steps, exported with every signature: {inference
  mode: SavedModel path}, one per mode for `--resize none` (they differ in `serving_default` and
  `evaluation_sums`), one ('whole') for the other resizes."""
  output = trainer_input.analyse(train_pattern, config.data, os.path.join(work, 'transform'))
  train, _ = data.train_and_eval([train_pattern], [eval_pattern], output, config)
  network = task.compiled_model(config, total_steps=steps)
  network.fit(train, steps_per_epoch=steps, epochs=1, verbose=0)
  modes = ('whole', 'slide') if config.data.resize == 'none' else ('whole',)
  model_dirs = {}
  for mode in modes:
    model_dirs[mode] = os.path.join(work, f'model_{mode}')
    signatures = export.add_signatures(
      network, output, resize=config.data.resize, inference_mode=mode
    )
    network.save(model_dirs[mode], save_format='tf', signatures=signatures)
  return model_dirs


def evaluate(model_dir: str, signature: str, pairs) -> dict:
  """Mean and per-class IoU at each image's own size, and seconds per image (the first image, which
  traces the signature, left out of the clock)."""
  serve = tf.saved_model.load(model_dir).signatures[signature]
  matrix, seconds = np.zeros((len(CLASSES),) * 2, np.int64), []
  for png, mask in pairs:
    start = time.perf_counter()
    ids = serve(examples=tf.constant([request(png)]))['class_ids'][0].numpy()
    seconds.append(time.perf_counter() - start)
    ids = ids[: mask.shape[0], : mask.shape[1]]
    matrix += iou.confusion_matrix(mask, ids, mask != IGNORE, len(CLASSES))
  per_class = iou.per_class_iou(matrix)
  return {
    'mean_iou': iou.mean_iou(matrix),
    'per_class': [float(v) for v in per_class],
    'seconds': float(np.mean(seconds[1:] or seconds)),
  }


def request(png: bytes) -> bytes:
  """A serving request: the encoded image alone."""
  feature = {
    data_format.IMAGE_ENCODED: tf.train.Feature(bytes_list=tf.train.BytesList(value=[png]))
  }
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _peak_child(model_dir: str, signature: str, side: int, work: str) -> dict:
  """Peak resident memory (MiB) of a fresh process that loads the model and runs `signature` on one
  side x side scene (with its mask for `evaluation_sums`), and its memory just before. The request
  is written here, so making the scene is no part of the child's peak; the child resets its peak
  (/proc/self/clear_refs) after loading, so the peak is the prediction's."""
  image, mask = make_scene(np.random.default_rng(0), side, side)
  png = tf.io.encode_png(image).numpy()
  if signature == export.EVALUATION_SIGNATURE:  # the Evaluator's input: a whole record
    body = data_format.make_example(
      png, 'png', side, side, 3, 'scene.png', data_format.encode_png(mask)
    ).SerializeToString()
  else:
    body = request(png)
  path = os.path.join(work, f'request_{side}.pb')
  with open(path, 'wb') as f:
    f.write(body)
  code = (
    'import sys, json; sys.path.insert(0, "benchmarks"); import tf_env; '
    'import tensorflow as tf; import large_images as L; '
    f'body = open({path!r}, "rb").read(); '
    f'serve = tf.saved_model.load({model_dir!r}).signatures[{signature!r}]; '
    'before = L.resident_mib("VmRSS"); open("/proc/self/clear_refs", "w").write("5"); '
    'serve(examples=tf.constant([body])); '
    'print(json.dumps({"before": before, "peak": L.resident_mib("VmHWM")}))'
  )
  result = subprocess.run(
    [sys.executable, '-c', code], capture_output=True, text=True, cwd=os.getcwd()
  )
  if result.returncode:
    raise RuntimeError(f'{signature} on {side}x{side} failed: {result.stderr[-2000:]}')
  return json.loads(result.stdout.strip().splitlines()[-1])


def memory_runs(model_dirs: dict, args, work: str) -> dict:
  """{row name: peak memory} of each prediction the table reports, each in a fresh process."""
  runs = [
    *(
      (model_dirs['whole'], export.serving_signature('slide'), 'serving, slide', side)
      for side in _sides(args.memory_sizes)
    ),
    *(
      (model_dirs['slide'], export.MASKS_SIGNATURE, 'masks, slide', side)
      for side in _sides(args.memory_sizes)
    ),
    *(
      (model_dirs['whole'], export.serving_signature('whole'), 'serving, whole', side)
      for side in _sides(args.whole_memory_sizes)
    ),
    *(
      (model_dirs['slide'], export.EVALUATION_SIGNATURE, 'evaluation_sums, slide', side)
      for side in _sides(args.eval_memory_sizes)
    ),
    *(
      (model_dirs['whole'], export.EVALUATION_SIGNATURE, 'evaluation_sums, whole', side)
      for side in _sides(args.eval_memory_sizes)[:1]
    ),
  ]
  memory = {}
  for model_dir, signature, name, side in runs:
    memory[f'{name} {side}x{side}'] = _peak_child(model_dir, signature, side, work)
    print(name, side, memory[f'{name} {side}x{side}'], flush=True)
  return memory


def _sides(text: str) -> list:
  return [int(s) for s in text.split(',')]


def _ratio_lines(memory: dict, args) -> list:
  """The peak at the largest side over the peak at the smallest, per prediction that has both; for
  a bounded one, whether it meets BOUNDED_RATIO."""
  lines = []
  for name, sizes in (
    ('serving, slide', args.memory_sizes),
    ('masks, slide', args.memory_sizes),
    ('serving, whole', args.whole_memory_sizes),
    ('evaluation_sums, slide', args.eval_memory_sizes),
  ):
    small, large = _sides(sizes)[0], _sides(sizes)[-1]
    peak = [memory[f'{name} {side}x{side}']['peak'] for side in (small, large)]
    pixels = (large / small) ** 2
    ratio = peak[1] / peak[0]
    line = (
      f'- {name}: {large}x{large} ({pixels:.0f} x the pixels of {small}x{small}) peaks at '
      f'{ratio:.2f} x the memory'
    )
    if name in BOUNDED:
      line += f'; target <= {BOUNDED_RATIO} x: {"met" if ratio <= BOUNDED_RATIO else "missed"}'
    elif name == 'serving, slide':
      floor = large * large * len(CLASSES) * 4 / 2**20
      line += f' (its probabilities output alone: {large}x{large}x{len(CLASSES)} float32 = {floor:.0f} MiB)'
    lines.append(line)
  return lines


def resident_mib(field: str) -> float:
  """This process's `field` of /proc/self/status (VmRSS now, VmHWM the peak), MiB."""
  with open('/proc/self/status') as f:
    for line in f:
      if line.startswith(field + ':'):
        return int(line.split()[1]) / 1024
  raise KeyError(field)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--sizes', default='128,256', help='model sizes (default: %(default)s)')
  parser.add_argument('--steps', type=int, default=300, help='train steps per model')
  parser.add_argument('--batch-size', type=int, default=8)
  parser.add_argument('--train', type=int, default=24, help='train scenes')
  parser.add_argument('--eval', type=int, default=4, help='eval scenes')
  parser.add_argument('--width', type=int, default=1024)
  parser.add_argument('--height', type=int, default=768)
  parser.add_argument('--memory-sizes', default='1024,4096', help='slide peak memory image sides')
  parser.add_argument(
    '--whole-memory-sizes', default='1024,2048', help='whole-image peak memory image sides'
  )
  parser.add_argument(
    '--eval-memory-sizes', default='1000,4000', help='evaluation_sums peak memory image sides'
  )
  parser.add_argument(
    '--memory-only',
    action='store_true',
    help=f'only the memory table: the none model at the first size, {MEMORY_ONLY_STEPS} steps',
  )
  parser.add_argument('--out', help='also write the markdown here')
  args = parser.parse_args(argv)
  sizes = [int(s) for s in args.sizes.split(',')][: 1 if args.memory_only else None]
  steps = MEMORY_ONLY_STEPS if args.memory_only else args.steps
  lines = report_table.header(
    'model size | mode | mean IoU | ' + ' | '.join(f'{c} IoU' for c in CLASSES) + ' | s / image'
  )
  memory = {}
  with tempfile.TemporaryDirectory() as work:
    os.makedirs(os.path.join(work, 'train'))
    os.makedirs(os.path.join(work, 'eval'))
    train_pattern = os.path.join(work, 'train', 'scenes.tfrecord')
    eval_pattern = os.path.join(work, 'eval', 'scenes.tfrecord')
    write_split(train_pattern, args.train, args.height, args.width, seed=0)
    pairs = write_split(eval_pattern, args.eval, args.height, args.width, seed=1)
    for size in sizes:
      for resize in ('none',) if args.memory_only else ('stretch', 'none'):
        config = TrainerConfig.from_flat(
          image_size=size,
          num_classes=len(CLASSES),
          class_names=','.join(CLASSES),
          resize=resize,
          batch_size=args.batch_size,
          random_scale=resize == 'none',
          seed=0,
        )
        model_dirs = train_and_export(
          config, train_pattern, eval_pattern, steps, os.path.join(work, f'{resize}{size}')
        )
        modes = (
          {f'none + {m}': export.serving_signature(m) for m in ('whole', 'slide')}
          if resize == 'none'
          else {'stretch': 'serving_default'}
        )
        for mode, signature in {} if args.memory_only else modes.items():
          scores = evaluate(model_dirs['whole'], signature, pairs)
          cells = ' | '.join(f'{v:.3f}' for v in scores['per_class'])
          lines.append(
            f'| {size} | {mode} | **{scores["mean_iou"]:.3f}** | {cells} | {scores["seconds"]:.2f} |'
          )
          print(lines[-1], flush=True)
        if resize == 'none' and size == sizes[0]:
          memory = memory_runs(model_dirs, args, work)
  lines = [] if args.memory_only else [*lines, '']
  lines += report_table.header(
    f'prediction (model size {sizes[0]}, one image) | peak MiB | before MiB | growth MiB'
  )
  lines += [
    f'| {name} | {m["peak"]:.0f} | {m["before"]:.0f} | {m["peak"] - m["before"]:.0f} |'
    for name, m in memory.items()
  ]
  lines += ['', *_ratio_lines(memory, args)]
  quality = (
    "IoU at each image's own size over the eval split; s / image: one image through the serving "
    'signature (CPU). '
    if not args.memory_only
    else ''
  )
  lines += [
    '',
    f'Data: {args.train} train and {args.eval} eval scenes of {args.width}x{args.height} px. Each '
    f'model: FCN (base filters 16, depth 3), {steps} steps of batch {args.batch_size}, the '
    f"loss {TrainerConfig().losses.loss} and the project's default recipe (none: random scale "
    f'0.5-2 crops). {quality}Memory: '
    'VmHWM of a fresh process that loads the model, its peak reset after the load, running the '
    'signature on one scene (evaluation_sums: with its mask; evaluation_sums and masks exported '
    'with that inference mode); growth = peak - resident before the prediction.',
  ]
  return report_table.publish(lines, args.out, 'large_images.py')


if __name__ == '__main__':
  sys.exit(main())
