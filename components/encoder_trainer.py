"""EncoderWeightsTrainer: TFX's Trainer whose model artifact records the encoder's weights file.

With `--encoder-weights`, run_fn writes the path and sha256 of the file it read into the model's
`assets.extra/encoder_weights.json` (`trainer.encoder_weights`); this executor copies them onto the
output `model` artifact as the custom properties `encoder_weights` and `encoder_weights_sha256`, so
ML Metadata holds exactly the file the Trainer read, hashed from the bytes it read. Custom
properties rather than an Importer node feeding a new Trainer input: the hash is known only once
the Trainer has read the file (on Kubeflow a gs:// URI the compiling machine need not read), and the
same properties reach ML Metadata on every runner without another component spec.
"""

from absl import logging
from tfx.components.trainer import component as trainer_component
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils
from tfx.utils import path_utils

from trainer import encoder_weights

MODEL_KEY = 'model'
WEIGHTS_PATH_PROPERTY = 'encoder_weights'
WEIGHTS_SHA256_PROPERTY = 'encoder_weights_sha256'


class Executor(trainer_executor.GenericExecutor):
  """TFX's generic Trainer executor, then the weights file's record onto the model artifact."""

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    super().Do(input_dict, output_dict, exec_properties)
    model = artifact_utils.get_single_instance(output_dict[MODEL_KEY])
    record = encoder_weights.read_record(path_utils.serving_model_path(model.uri))
    if record:
      model.set_string_custom_property(WEIGHTS_PATH_PROPERTY, record['path'])
      model.set_string_custom_property(WEIGHTS_SHA256_PROPERTY, record['sha256'])
      logging.info('Encoder weights %s (sha256 %s)', record['path'], record['sha256'])


class EncoderWeightsTrainer(trainer_component.Trainer):
  """TFX's Trainer (same spec, inputs and outputs) running `Executor`."""

  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
