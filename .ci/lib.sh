# Helpers for the CI legs that build their own virtual environment (sourced, not run).

# A Python of the given minor version ("3.12"), from PATH or pyenv; exits 1 when there is none.
find_python() {
    local version=$1 candidate
    for candidate in "python$version" "$(pyenv root 2>/dev/null)"/versions/"$version".*/bin/"python$version"; do
        if "$candidate" -c "import sys; assert sys.version_info[:2] == tuple(map(int, '$version'.split('.')))" \
                2>/dev/null; then
            command -v "$candidate" 2>/dev/null || echo "$candidate"
            return 0
        fi
    done
    echo "CI: no Python $version found (PATH or pyenv)" >&2
    return 1
}

# Fails unless the venv's `tensorflow` is provided by exactly one distribution, the one expected
# (name==version), `pip check` is clean, and TensorFlow and keras_transfer import.
check_tensorflow_kept() {
    local venv=$1 expected=$2
    # From the venv's folder, so that `import keras_transfer` finds the installed package, not the checkout.
    (cd "$venv" && "$venv/bin/python" - "$expected") <<'EOF'
import re
import subprocess
import sys
from importlib import metadata

expected = sys.argv[1]
providers = sorted(f"{re.sub(r'[-_.]+', '-', n).lower()}=={metadata.version(n)}"
                   for n in set(metadata.packages_distributions().get("tensorflow", [])))
print(f"CI: distributions providing `tensorflow`: {providers} (expected [{expected!r}])")
if providers != [expected]:
    sys.exit(f"CI: installing keras-transfer replaced or duplicated TensorFlow: {providers}")
subprocess.run([sys.executable, "-m", "pip", "check"], check=True)
import tensorflow as tf  # noqa: E402  (fails with an undefined symbol when two distributions collide)
import keras  # noqa: E402
import keras_transfer  # noqa: E402,F401
print(f"CI: tensorflow {tf.__version__}, keras {keras.__version__}, keras_transfer imports")
EOF
}

# Options of the legs that build a venv: `--install-only VENV` creates VENV and installs into it (no tests),
# `--venv VENV` runs the tests in a VENV prepared so; with neither, a temporary venv does both. `--source DIR`
# installs keras-transfer from DIR (default: this checkout). Sets leg_venv, leg_install, leg_test, leg_source
# and leg_args (the remaining arguments).
parse_leg_options() {
    leg_venv="" leg_install=true leg_test=true leg_source=. leg_args=()
    while [ $# -gt 0 ]; do
        case "$1" in
            --install-only) leg_venv=$2 leg_test=false; shift 2 ;;
            --venv) leg_venv=$2 leg_install=false; shift 2 ;;
            --source) leg_source=$2; shift 2 ;;
            *) leg_args+=("$1"); shift ;;
        esac
    done
    leg_source=$(realpath "$leg_source")
    if [ -z "$leg_venv" ]; then
        leg_root=$(mktemp -d)
        trap 'rm -rf "$leg_root"' EXIT
        leg_venv=$leg_root/venv
    fi
}
