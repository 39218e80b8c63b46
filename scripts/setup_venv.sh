#!/usr/bin/env bash
# Create or refresh .venv/ at the repo root: the CPU build of torch first (so nothing installs a
# multi-GB CUDA build), then cryokit with its notebooks and test extras. Re-runs are quick: a stamp of the
# dependency files skips the install when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
stamp=.venv/.cryokit-deps
want=$(cat requirements.txt setup.cfg scripts/setup_venv.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setting up .venv/ (first run, or the dependencies changed): about 2 to 8 minutes" >&2
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip_install() {
  # Keep the console readable: drop pip's notes about missing local package mirrors.
  .venv/bin/python -m pip install -q "$@" 2> >(grep -v -e "is ignored: it is neither" -e "BuildBackendWarning" >&2)
}
pip_install --upgrade pip
pip_install "torch==${TORCH_VERSION}" || pip_install "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu
pip_install -r requirements.txt -e ".[notebooks,test]"
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
echo "$want" > "$stamp"
