"""Imported first by every benchmark, before anything imports TensorFlow.

TFX 1.16 needs Keras 2, and TF 2.16 gives Keras 3 unless TF_USE_LEGACY_KERAS is set before its first
import; TF's C++ start-up also logs CUDA-plugin registration noise that says nothing on a CPU.
"""

import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
