#!/usr/bin/env bash
# CI leg: the Kaggle image's versions: Python 3.12, TensorFlow 2.20, Keras 3.13.2,
# the rest as constraints/kaggle.txt records it. Installed the way a Kaggle user does: the image's
# TensorFlow and Keras first, then this package on top; TensorFlow must stay as it was.
# Test subset: everything but tests/benchmarks, tests/demos, tests/reliability and tests/serving (the
# slowest directories: quick benchmarks, fault and resume runs, fresh-process exports; the README leg runs
# them on the newest releases), so that all CI legs stay under 30 minutes on 2 cores. Measured
# 2026-12-05 on the shared 2-core machine under load: 11 min (install 2.4, pytest 8.5 for 479 tests).
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
    --ignore=tests/benchmarks --ignore=tests/demos --ignore=tests/reliability --ignore=tests/serving "$@"
