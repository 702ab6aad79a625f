"""Where the Evaluator's time goes, from a py-spy profile of `benchmarks/evaluation.py`.

    py-spy record --rate 50 --format raw --subprocesses -o profile.txt -- \\
        .venv/bin/python benchmarks/evaluation.py
    .venv/bin/python benchmarks/evaluator_profile.py profile.txt [--rate 50]

py-spy is not a project dependency (`pip install --target DIR py-spy` puts it outside the venv).
The Evaluator's samples are the stacks under TFX's evaluator executor; each goes to the first
category (in CATEGORIES' order) one of whose markers its stack holds. Prints samples, seconds and
shares. Only Python frames on the CPU are sampled: TensorFlow's own threads are not.
"""

import argparse
import collections
import sys

EVALUATOR = 'tfx/components/evaluator/executor.py'
CATEGORIES = (
  (
    'repr of the batch in the failed structured signature call (numpy array printing)',
    ('arrayprint',),
  ),
  ('a Keras load of the model to find its type (get_model_type)', ('get_model_type',)),
  ('loading the SavedModel (construct_fn)', ('construct_fn',)),
  ('the signature call, the rest', ('_batch_reducible_process',)),
  ('imports', ('_find_and_load',)),
  ("Beam's state cache sizing side inputs (objsize)", ('objsize',)),
  ('building the Beam pipeline', ('apache_beam/pvalue.py', 'apply (apache_beam')),
  ('the metrics and their combiners', ('metrics_plots_and_validations_evaluator', 'iou_metric')),
  ('writing the results', ('tensorflow_model_analysis/writers',)),
  ("Beam's execution of the job, the rest", ('fn_runner', 'bundle_processor')),
)


def breakdown(path: str) -> collections.Counter:
  """{category: samples} of the Evaluator's stacks in a py-spy raw (collapsed) profile."""
  counts = collections.Counter()
  with open(path, encoding='utf-8') as profile:
    for line in profile:
      stack, _, samples = line.rstrip().rpartition(' ')
      if EVALUATOR not in stack:
        continue
      name = next((n for n, markers in CATEGORIES if any(m in stack for m in markers)), 'other')
      counts[name] += int(samples)
  return counts


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('profile', help="py-spy's raw output")
  parser.add_argument('--rate', type=float, default=50.0, help="py-spy's samples per second")
  args = parser.parse_args(argv)
  counts = breakdown(args.profile)
  total = sum(counts.values())
  print(f'Evaluator: {total} samples, {total / args.rate:.1f} s of Python on the CPU')
  for name, samples in counts.most_common():
    print(f'{samples:6d} {samples / args.rate:6.1f} s {samples / total:6.1%}  {name}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
