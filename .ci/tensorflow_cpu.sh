#!/usr/bin/env bash
# CI leg: `pip install` of this package onto an environment that has `tensorflow-cpu`.
# Requiring `tensorflow` by name there made pip add `tensorflow` 2.21 on top of tensorflow-cpu 2.20:
# `pip check` silent, `import tensorflow` failing with an undefined symbol. setup.py now names the
# distribution already installed; this leg checks that on a real install, then runs a small subset.
# Usage: .ci/tensorflow_cpu.sh [--install-only VENV | --venv VENV] [--source DIR | SOURCE_DIR]
# (default: this checkout; the options: parse_leg_options in .ci/lib.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/lib.sh
parse_leg_options "$@"
venv=$leg_venv
src=$leg_source
[ ${#leg_args[@]} -eq 0 ] || src=$(realpath "${leg_args[0]}")   # the older form: .ci/tensorflow_cpu.sh SOURCE_DIR
if $leg_install; then
    "$(find_python 3.12)" -m venv "$venv"   # Python 3.12 as on Kaggle: constraints/kaggle.txt is for 3.12
    "$venv/bin/pip" install --quiet -c constraints/kaggle.txt tensorflow-cpu==2.20.0 keras   # the existing TF
    "$venv/bin/pip" install --quiet -c constraints/kaggle.txt "$src[test]"                   # keras-transfer
    check_tensorflow_kept "$venv" "tensorflow-cpu==2.20.0"
fi
$leg_test || exit 0
"$venv/bin/keras-transfer" --help > /dev/null
"$venv/bin/python" -m pytest -p no:cacheprovider -q tests/test_packaging.py tests/losses tests/layers/test_gradient_reversal.py
