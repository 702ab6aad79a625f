"""Beam pipeline arguments for every Beam-based component, by runner name.

Local runners are chosen by name; cluster runners (Dataflow, Flink, Spark) need their own endpoints,
so their argument sets are templates the user completes and passes with --beam-arg (see docs/scaling.md).
"""

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
