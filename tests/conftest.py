import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One compute thread per xdist worker: the workers already fill the cores, and TF's default pool per
    # worker oversubscribes them. Two inter-op threads keep MirroredStrategy's replicas running side by side.
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(2)

