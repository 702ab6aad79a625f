"""Names of the transformed features: the contract between Transform, Trainer and Evaluator."""

IMAGE = 'image'  # float32 [S, S, channels], normalised with full-pass statistics.
LABEL = 'label'  # float32 [S, S, num_classes], one-hot; ignored pixels are all-zero rows.
WEIGHT = 'weight'  # float32 [S, S], 0 on ignored pixels, 1 elsewhere.
# float32 [9 x num_classes], the same in every record: the train split's per-class label position
# sums (`transform.preprocessing.label_position_sums`, rows `trainer.lateral.STAT_ROWS`), a constant
# of the graph the Trainer reads to find classes with a side.
LABEL_POSITIONS = 'label_positions'
