#!/usr/bin/env bash
# Services the tuning and widget tests use, installed from Debian's packages and started idempotently:
#   * PostgreSQL on 127.0.0.1:5432 with role/db "cryokit" (the two-worker Optuna test);
#   * Chromium at /usr/bin/chromium (the threshold widget's browser test).
# Quick when everything is there already (no apt-get at all). Prints the database URL for
# CRYOKIT_TEST_POSTGRES_URL on its last line. Never fatal for CI: the tests skip, naming the reason,
# when a service is missing.
set -uo pipefail

PG_USER=cryokit
PG_PASSWORD=cryokit
PG_DB=cryokit_test
missing=()
command -v pg_ctlcluster >/dev/null 2>&1 || missing+=(postgresql)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ci_services: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Bounded: a slow mirror must not eat CI's budget (the tests then skip, naming the reason).
    timeout 300 apt-get update -qq >/dev/null 2>&1
    timeout 600 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
      || echo "ci_services: apt-get install ${missing[*]} failed or took over 10 minutes" >&2
  else
    echo "ci_services: ${missing[*]} missing and not root: the tests that need them will skip" >&2
  fi
fi

if command -v pg_ctlcluster >/dev/null 2>&1; then
  cluster=$(pg_lsclusters -h 2>/dev/null | head -n 1)
  if [ -z "$cluster" ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    pg_createcluster "$version" main >/dev/null 2>&1 || true
    cluster=$(pg_lsclusters -h 2>/dev/null | head -n 1)
  fi
  read -r version name port status _ <<<"$cluster"
  if [ "${status:-}" != "online" ]; then
    pg_ctlcluster "$version" "$name" start >/dev/null 2>&1 || echo "ci_services: postgres did not start" >&2
  fi
  as_postgres() { runuser -u postgres -- psql -p "${port:-5432}" -v ON_ERROR_STOP=1 -qtA "$@" 2>/dev/null; }
  if [ "$(as_postgres -c "SELECT 1 FROM pg_roles WHERE rolname='$PG_USER'")" != 1 ]; then
    as_postgres -c "CREATE ROLE $PG_USER LOGIN PASSWORD '$PG_PASSWORD'" >/dev/null
  fi
  if [ "$(as_postgres -c "SELECT 1 FROM pg_database WHERE datname='$PG_DB'")" != 1 ]; then
    as_postgres -c "CREATE DATABASE $PG_DB OWNER $PG_USER" >/dev/null
  fi
  echo "postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:${port:-5432}/$PG_DB"
fi
