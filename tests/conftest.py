import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

# Tests trace thousands of small graphs and run each a few times: Grappler's graph rewrites (constant folding,
# remapping, ...) cost more than they save there (about a quarter of a small model's first compiled `fit`).
# They are TensorFlow's optimisations, not this library's behaviour; the distributed probes turn them off too,
# and the user's own processes (README blocks, examples, the console script, the serving loader) keep them.
tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One compute thread per xdist worker: the workers already fill the cores, and TF's default pool per
    # worker oversubscribes them. Two inter-op threads keep MirroredStrategy's replicas running side by side.
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
        "tests/test_examples.py::test_every_example_runs_quick",
    ),
    (
        "tests/reliability/test_resume.py::LifeCycleTest::test_second_half",
        "tests/reliability/test_mixed_precision.py::MixedPrecisionTest::test_every_model_trains_a_float16",
        "tests/distribute/test_multi_worker.py::MultiWorkerFitTest::",
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


# Unit tests `fit` eagerly: tracing a tiny model's train step costs more than the few steps they take (about a
# third of CI's time). The compiled path keeps its own tests: every model of the zoo trains, predicts and exports
# compiled (tests/reliability/test_resume.py, mixed_float16 in test_mixed_precision.py); so do the tests below
# (their paths, or names: export straight after fit, jit_compile, retracing, MirroredStrategy ...), the
# subprocess ones (README, examples, CLI, benchmarks, demos, probes), tests that train for many steps and
# those that check what only a trace does (static shapes in messages, graph-mode errors), marked
# `@pytest.mark.compiled`, and any test passing `run_eagerly` itself.
COMPILED_PATHS = (
    "tests/reliability/test_resume.py",
    "tests/reliability/test_dann_resume.py",
    "tests/reliability/test_bad_inputs.py",
    "tests/distribute/",
    "tests/benchmarks/",
    "tests/demos/",
    "tests/test_cli.py",
    "tests/test_examples.py",
)
COMPILED_NAMES = ("after_fit", "compile", "jit", "xla", "retrac", "trace", "graph", "mirrored", "strategy")


# Quick benchmarks that build many models for a step or two each (fine-tuning recipes, every SSL method, every
# domain-adaptation model, text and CLIP transfer): eager is faster. Measured alone on 2 cores: the last four
# 76 s eager against 118 s compiled; the first five 50 s eager (127 worker-s compiled in a full run). Their
# models train compiled in the zoo and the unit tests above.
EAGER_BENCHMARKS = (
    "tests/benchmarks/test_image_folder_pipeline_quick.py::",
    "tests/benchmarks/test_ssl_quick.py::SSLBenchmarksQuickTest::test_digits_probe_pretrains_every_method",
    "tests/benchmarks/test_domain_adaptation_quick.py::DomainAdaptationBenchmarksQuickTest::test_moons",
    "tests/benchmarks/test_when_to_transfer_quick.py::",
    "tests/benchmarks/test_foundation_quick.py::FoundationBenchmarksQuickTest::test_transfer_vs_scratch_quick",
    "tests/benchmarks/test_text_transfer.py::",
    "tests/benchmarks/test_text_cloze.py::",
    "tests/benchmarks/test_clip_quick.py::",
    "tests/benchmarks/test_adapters_quick.py::AdaptersBenchmarksQuickTest::test_transfer_quick",
)


def _runs_compiled(item):
    name = item.name.lower()
    if item.nodeid.startswith(EAGER_BENCHMARKS):
        return False
    return (
        item.get_closest_marker("compiled") is not None
        or item.nodeid.startswith(COMPILED_PATHS)
        or any(word in name for word in COMPILED_NAMES)
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "compiled: the test's `fit` runs compiled (the default elsewhere is eager)")


@pytest.fixture(autouse=True)
def _eager_fit_in_unit_tests(request, monkeypatch):
    if _runs_compiled(request.node):
        return
    import keras

    # Patched where Keras defines it: `load_model` compiles a reloaded model only while `compile` is its own.
    owner = next(cls for cls in keras.Model.__mro__ if "compile" in vars(cls))
    compile_ = owner.compile

    def compile(self, *args, **kwargs):
        kwargs.setdefault("run_eagerly", True)
        return compile_(self, *args, **kwargs)

    monkeypatch.setattr(owner, "compile", compile)
