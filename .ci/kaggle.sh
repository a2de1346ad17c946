#!/usr/bin/env bash
# CI leg: the Kaggle image's versions: Python 3.12, TensorFlow 2.20, Keras 3.13.2,
# the rest as constraints/kaggle.txt records it. Installed the way a Kaggle user does: the image's
# TensorFlow and Keras first, then this package on top; TensorFlow must stay as it was.
# Test subset: everything but tests/benchmarks, tests/demos, tests/reliability, tests/serving and the
# multi-worker runner test (the slowest: quick benchmarks, fault and resume runs, fresh-process exports,
# worker processes; a Kaggle kernel is one machine; the README leg runs them on the newest releases), so
# that all CI legs stay under 30 minutes on 2 cores. Measured 2026-12-06 on the 2-core machine: 9 min
# (install 1.5, pytest 7.2 for 1,049 tests with the multi-worker test); all three legs 27.8 min.
# Extra arguments go to pytest (e.g. --durations=30).
set -euo pipefail
# Test fixtures (.keras files) are saved with the oldest Keras supported, this leg's 3.13.2: newer
# Keras writes config keys older Keras refuses.
cd "$(dirname "$0")/.."
source .ci/lib.sh

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
"$(find_python 3.12)" -m venv "$root/venv"
venv=$root/venv
"$venv/bin/pip" install --quiet -c constraints/kaggle.txt tensorflow keras     # what the image has
"$venv/bin/pip" install --quiet -c constraints/kaggle.txt ".[test]"           # the user's install
check_tensorflow_kept "$venv" "tensorflow==2.20.0"
"$venv/bin/python" -m pytest -p no:cacheprovider -q tests \
    --ignore=tests/benchmarks --ignore=tests/demos --ignore=tests/reliability --ignore=tests/serving \
    --ignore=tests/distribute/test_multi_worker.py "$@"
