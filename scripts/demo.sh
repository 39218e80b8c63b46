#!/usr/bin/env bash
# The README's main command: set up .venv/ if needed, then run the whole job end to end
# (simulate data unless --data is given, classical baseline, train the U-Net, predict, score, plots).
# Options go to `cryokit demo` (see `bash scripts/demo.sh --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
exec .venv/bin/cryokit demo "$@"
