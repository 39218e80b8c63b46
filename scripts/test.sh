#!/usr/bin/env bash
# The README's test command: set up .venv/ if needed, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
# Lint and format first (a second or two); CRYOKIT_SKIP_LINT=1 skips them while iterating on one test.
if [ "${CRYOKIT_SKIP_LINT:-0}" != "1" ]; then
  .venv/bin/ruff check --quiet . || { echo "ruff check failed (fix, or run .venv/bin/ruff check --fix .)" >&2; exit 1; }
  .venv/bin/ruff format --check --quiet . || { echo "ruff format: files above need .venv/bin/ruff format ." >&2; exit 1; }
fi
set +e
# Bounded as a whole too (each test is bounded by pytest-timeout, setup.cfg): the suite takes about
# 5 minutes on 2 cores, so an hour means something is stuck.
timeout --foreground --kill-after=60 "${CRYOKIT_TEST_TIMEOUT:-3600}" .venv/bin/python -m pytest "$@"
status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  echo "pytest did not finish within ${CRYOKIT_TEST_TIMEOUT:-3600} s: failing" >&2
fi
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$status"
