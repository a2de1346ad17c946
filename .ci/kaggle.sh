#!/usr/bin/env bash
# CI leg: the Kaggle image's versions: Python 3.12, TensorFlow 2.20, Keras 3.13.2,
# the rest as constraints/kaggle.txt records it. Installed the way a Kaggle user does: the image's
# TensorFlow and Keras first, then this package on top; TensorFlow must stay as it was.
# Test subset: the Keras contract of the library on these versions: every test whose name says it saves,
# reloads, exports or serialises a config, or runs a harness, uses keras-hub or the private Keras API, plus
# the docstring examples and the packaging tests (`-k` below), less those that simulate keras-hub missing.
# The README leg runs every test on the newest releases; training-behaviour, mixed-precision and
# MirroredStrategy tests, numerical reference tests (NumPy formulas, finite differences), quick benchmarks,
# demos, reliability and serving runs, README blocks, examples, CLI, lint and code-structure checks run there
# only, so that all CI legs stay under 30 minutes on 2 cores.
# Usage: .ci/kaggle.sh [--install-only VENV | --venv VENV] [--source DIR] [pytest arguments, e.g. --durations=30]
# (the options: parse_leg_options in .ci/lib.sh).
set -euo pipefail
# Test fixtures (.keras files) are saved with the oldest Keras supported, this leg's 3.13.2: newer
# Keras writes config keys older Keras refuses.
cd "$(dirname "$0")/.."
source .ci/lib.sh

parse_leg_options "$@"
venv=$leg_venv
if $leg_install; then
    "$(find_python 3.12)" -m venv "$venv"
    "$venv/bin/pip" install --quiet -c constraints/kaggle.txt tensorflow keras     # what the image has
    "$venv/bin/pip" install --quiet -c constraints/kaggle.txt "$leg_source[test]"  # the user's install
    check_tensorflow_kept "$venv" "tensorflow==2.20.0"
fi
$leg_test || exit 0
"$venv/bin/python" -m pytest -p no:cacheprovider -q tests \
    --ignore=tests/benchmarks --ignore=tests/demos --ignore=tests/reliability --ignore=tests/serving \
    --ignore=tests/distribute/test_multi_worker.py --ignore=tests/test_readme.py --ignore=tests/test_examples.py \
    --ignore=tests/test_cli.py --ignore=tests/test_lint.py --ignore=tests/test_code_structure.py \
    -k "(round_trip or serializ or export or harness or layer_basics or keras_hub or private or reload or save \
        or config or docstrings or packaging or public_api or model_graph) \
        and not (without_keras_hub or cannot_be_imported)" \
    "${leg_args[@]}"
