#!/usr/bin/env bash
# Build MinkowskiEngine 0.5.4 CPU-only from the PyPI sdist and install it into a venv
# (the recipe is in the notes below). Usage: scripts/build_minkowski.sh [VENV]   (default: <repo>/.venv)
#
# - The built wheel is cached in ${SSEN_CACHE:-$HOME/.cache/ssen_ros}/wheels/<key>/, keyed by
#   ME version, Python tag and torch version; a cached wheel skips the ~12 min build.
# - The sdist is fetched in a throwaway venv with setuptools==59.8.0 and wheel<0.44, because
#   `pip download` fails preparing its metadata under current setuptools.
# - The build runs with VENV's python (it needs that venv's torch) in a temporary directory:
#   ME's setup.py uninstalls MinkowskiEngine and deletes ./build when it runs.
# - Import fix for Python >= 3.10: the installed files' `from collections import Sequence`
#   is rewritten to `collections.abc` (done here, once, so a plain `import MinkowskiEngine`
#   works everywhere, not only through ssen_ros).
# Needs: libopenblas-dev, g++, ninja (optional). Safe to run again: every step is idempotent.
set -euo pipefail

ME_VERSION=0.5.4
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(cd "${1:-$REPO/.venv}" && pwd)"
PY="$VENV/bin/python"
CACHE="${SSEN_CACHE:-$HOME/.cache/ssen_ros}"

[ -x "$PY" ] || { echo "build_minkowski: no python at $PY" >&2; exit 2; }
[ -e /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h ] || [ -e /usr/include/openblas/cblas.h ] \
    || ldconfig -p | grep -q libopenblas \
    || { echo "build_minkowski: libopenblas-dev is missing (apt-get install libopenblas-dev)" >&2; exit 2; }

TORCH_VERSION="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"
PY_TAG="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
WHEEL_DIR="$CACHE/wheels/MinkowskiEngine-$ME_VERSION-$PY_TAG-torch$TORCH_VERSION-cpu"
mkdir -p "$WHEEL_DIR"

wheel() { find "$WHEEL_DIR" -maxdepth 1 -iname 'minkowskiengine-*.whl' | head -n 1; }

if [ -z "$(wheel)" ]; then
    WORK="$(mktemp -d)"
    trap 'rm -rf "$WORK"' EXIT
    echo "build_minkowski: fetching the sdist ($(date +%T))"
    "$PY" -m venv "$WORK/dl"
    "$WORK/dl/bin/pip" install -q "setuptools==59.8.0" "wheel<0.44"
    # ME's setup.py imports torch even for metadata: let the throwaway venv see VENV's packages
    # after its own (so its old setuptools still wins).
    "$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
        > "$("$WORK/dl/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/zz_venv.pth"
    "$WORK/dl/bin/pip" download -q --no-deps --no-binary :all: --no-build-isolation \
        -d "$WORK" "MinkowskiEngine==$ME_VERSION"
    tar -xzf "$WORK"/MinkowskiEngine-"$ME_VERSION".tar.gz -C "$WORK"
    echo "build_minkowski: building with $PY, torch $TORCH_VERSION ($(date +%T))"
    start=$(date +%s)
    (cd "$WORK/MinkowskiEngine-$ME_VERSION" \
        && PATH="$VENV/bin:$PATH" MAX_JOBS="${MAX_JOBS:-2}" "$PY" setup.py bdist_wheel --cpu_only --blas=openblas \
        && cp dist/*.whl "$WHEEL_DIR/")
    echo "build_minkowski: built in $(( $(date +%s) - start )) s"
else
    echo "build_minkowski: using cached $(wheel)"
fi

"$PY" -m pip install -q --no-deps --force-reinstall "$(wheel)"

SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
grep -rlE '^from collections import Sequence' "$SITE/MinkowskiEngine" 2>/dev/null \
    | while read -r f; do
        sed -i -E -e 's/^from collections import Sequence$/from collections.abc import Sequence/' \
            -e 's/^from collections import Sequence, (.+)$/from collections import \1\nfrom collections.abc import Sequence/' "$f"
        echo "build_minkowski: patched collections.abc import in ${f#$SITE/}"
    done

"$PY" -c 'import MinkowskiEngine as ME; print("build_minkowski: MinkowskiEngine", ME.__version__, "imports")'
