"""Beam pipeline arguments for every Beam-based component, by runner name.

Local runners are chosen by name; cluster runners (Dataflow, Flink, Spark) need their own endpoints,
so their argument sets are templates the user completes and passes with --beam-arg (see docs/scaling.md).
"""

import os

LOCAL_RUNNERS = ('in_memory', 'multi_processing', 'portable')

# Documented, not chosen by name: each needs the user's project, cluster address and image.
CLUSTER_ARGUMENT_TEMPLATES = {
  'dataflow': [
    '--runner=DataflowRunner',
    '--project=PROJECT',
    '--region=REGION',
    '--temp_location=gs://BUCKET/tmp',
    '--sdk_container_image=REGISTRY/iouseg:0.1.0',
    '--experiments=use_runner_v2',
  ],
  'flink': [
    '--runner=FlinkRunner',
    '--flink_master=HOST:8081',
    '--environment_type=DOCKER',
    '--environment_config=REGISTRY/iouseg:0.1.0',
  ],
  'spark': [
    '--runner=SparkRunner',
    '--spark_master_url=spark://HOST:7077',
    '--environment_type=DOCKER',
    '--environment_config=REGISTRY/iouseg:0.1.0',
  ],
}


def beam_args(runner: str, workers: int = 2) -> list[str]:
  """Arguments for a local runner.

  in_memory: DirectRunner in this process (fastest for small data: no worker start-up).
  multi_processing: DirectRunner with `workers` processes; each imports TensorFlow as it starts, so
    it pays off only when the data is large (docs/performance.md has the start-up cost).
  portable: the portable runner with an embedded job server, the path Flink and Spark take;
    LOOPBACK runs the SDK harness in this process (no Docker needed).
  """
  if runner == 'in_memory':
    return ['--direct_running_mode=in_memory']
  if runner == 'multi_processing':
    return ['--direct_running_mode=multi_processing', f'--direct_num_workers={workers}']
  if runner == 'portable':
    return ['--runner=PortableRunner', '--job_endpoint=embed', '--environment_type=LOOPBACK']
  raise ValueError(
    f'unknown Beam runner {runner!r}; choose one of {", ".join(LOCAL_RUNNERS)} '
    "or pass a cluster runner's arguments with --beam-arg"
  )


# What, among Beam's arguments, tells TFX the workers get their code some other way; without one
# TFX builds a source package of itself (`python setup.py sdist` in a subprocess, about 0.9 s) in
# every Beam component's executor (`tfx.utils.dependency_utils.make_beam_dependency_flags`).
_DEPENDENCY_FLAGS = (
  '--extra_package',
  '--extra_packages',
  '--setup_file',
  '--requirements_file',
  '--worker_harness_container_image',
  '--sdk_container_image',
)
_SETUP_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'setup.py')


def with_local_dependencies(args: list[str]) -> list[str]:
  """`args` plus `--setup_file` of this checkout when they run Beam's DirectRunner (in memory or
  with worker processes, both in this environment: nothing is staged, so no package is needed) and
  name no dependency of their own. Without it TFX would build and hand the DirectRunner a source
  package of itself for each Beam component, which the DirectRunner never reads (4.2 s of the
  demo's run). Any other runner, or an installed copy without its setup.py, keeps TFX's default."""
  runners = [arg.split('=', 1)[1] for arg in args if arg.startswith('--runner=')]
  if runners and runners[-1] not in ('DirectRunner', 'direct'):
    return list(args)
  if any(arg.split('=', 1)[0] in _DEPENDENCY_FLAGS for arg in args):
    return list(args)
  if not os.path.isfile(_SETUP_FILE):
    return list(args)
  return [*args, f'--setup_file={_SETUP_FILE}']
