"""Run by test_seeded_runs.py in a subprocess: op determinism is process-wide and cannot be undone."""

import hashlib
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.getcwd())
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.experimental.enable_op_determinism()

from tests import model_zoo  # noqa: E402


def digest(model):
    h = hashlib.sha256()
    for v in list(model.weights) + list(model.optimizer.variables):
        h.update(np.ascontiguousarray(v.numpy()).tobytes())
    return h.hexdigest()


def run(name, seed):
    # The seed is set before the model is built (model_zoo.build) and governs everything after it:
    # initial weights, dropout, augmentation, noise, episode sampling.
    entry = model_zoo.build(name, seed=seed)
    model_zoo.fit(entry, epochs=2)
    return digest(entry.model)


def main():
    results = {}
    for name in model_zoo.NAMES:
        results[name] = [run(name, 11), run(name, 11), run(name, 12)]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
