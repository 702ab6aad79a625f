"""Names of the transformed features: the contract between Transform, Trainer and Evaluator."""

IMAGE = 'image'  # float32 [S, S, channels], normalised with full-pass statistics.
LABEL = 'label'  # float32 [S, S, num_classes], one-hot; ignored pixels are all-zero rows.
WEIGHT = 'weight'  # float32 [S, S], 0 on ignored pixels, 1 elsewhere.
