"""Record validation between ExampleGen and the components that read examples.

    from components.record_validation import RecordValidator, TolerantImportExampleGen

    example_gen = TolerantImportExampleGen(input_base=..., input_config=...)  # or ImportExampleGen
    validator = RecordValidator(examples=example_gen.outputs['examples'], num_classes=4,
                                ignore_label=255, max_bad_fraction=0.0)
    validator.outputs['valid_examples']  # -> StatisticsGen, Transform, Evaluator
    validator.outputs['quarantine']      # the bad records unchanged, with a reason each

Every record is checked the way `iouseg convert` checks an image/mask pair (checks.py): it parses as a
tf.train.Example with one image/encoded and one image/segmentation/class/encoded; the image fully
decodes with Pillow as an 8-bit grayscale/RGB/RGBA PNG or JPEG within the decompression-bomb limit; the
mask as an 8-bit grayscale PNG of the image's size whose values are < num_classes or the ignore label;
declared height/width/channels/format agree. A Beam job (beam_job.py) reads the input files record by
record (tfrecord_reader.py: a damaged stretch of a file is one bad record, with its byte offset, not a
crash), sends each record to exactly one of the two outputs, and counts them; the executor fails the
run when any split's bad fraction exceeds max_bad_fraction (default 0), after writing both outputs.

Stock ImportExampleGen fails on a damaged TFRecord file before any validator runs (see
tolerant_import.py); TolerantImportExampleGen passes such stretches on for the validator to report.
"""

from components.record_validation.component import RecordValidator
from components.record_validation.executor import BadRecordsError
from components.record_validation.tolerant_import import TolerantImportExampleGen

__all__ = ['BadRecordsError', 'RecordValidator', 'TolerantImportExampleGen']
