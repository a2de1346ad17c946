import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One compute thread per xdist worker: the workers already fill the cores, and TF's default pool per
    # worker oversubscribes them. Two inter-op threads keep MirroredStrategy's replicas running side by side.
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(2)


# The longest tests (a few minutes each on 2 cores), in two lists: pytest-xdist's worksteal scheduler hands
# each of two workers one contiguous half of the collection, so these start first, one list on each worker,
# instead of one of them starting last while the other worker idles. Prefixes of test ids; stale ones are
# harmless (ordering only).
LONG_TESTS = (
    (
        "tests/reliability/test_resume.py::LifeCycleTest::test_first_half",
        "tests/test_readme.py::test_every_readme_block_runs_verbatim",
        "tests/reliability/test_mixed_precision.py::MixedPrecisionTest::test_every_model_trains_a_bfloat16",
    ),
    (
        "tests/reliability/test_resume.py::LifeCycleTest::test_second_half",
        "tests/reliability/test_mixed_precision.py::MixedPrecisionTest::test_every_model_trains_a_float16",
        "tests/distribute/test_multi_worker.py::MultiWorkerFitTest::",
        "tests/test_examples.py::",
    ),
)


def pytest_collection_modifyitems(config, items):
    def is_long(item, prefixes):
        return any(item.nodeid.startswith(prefix) for prefix in prefixes)

    first = [item for item in items if is_long(item, LONG_TESTS[0])]
    second = [item for item in items if is_long(item, LONG_TESTS[1])]
    rest = [item for item in items if item not in first and item not in second]
    split = max(len(items) // 2 - len(first), 0)
    items[:] = first + rest[:split] + second + rest[split:]
