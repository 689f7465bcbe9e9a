#!/usr/bin/env bash
# Runs Shoal's whole test suite: unit tests and the multi-process cluster tests, including the
# pyrqlite, psycopg, asyncpg, SQLAlchemy, Alembic, Django, Knex, Sequelize and TypeORM sessions, psql, chromium and an S3 server (moto) (installed here if missing). Usage: scripts/test.sh [cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c 'import pyrqlite, psycopg, sqlalchemy, asyncpg, alembic, django, peewee, psycopg2, moto.server, pytest, pytest_timeout' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check -r tests/clients/requirements.txt
fi
# psql drives the PostgreSQL endpoint in the tests, as a user would; chromium loads the
# dashboard; node runs the Node.js clients (Knex, Sequelize, TypeORM over node-postgres).
missing=()
command -v psql >/dev/null || missing+=(postgresql-client)
command -v npm >/dev/null || missing+=(nodejs npm)
command -v chromium >/dev/null || missing+=(chromium)
command -v sqlite3 >/dev/null || missing+=(sqlite3)
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "scripts/test.sh: needs ${missing[*]} (Debian packages)" >&2; exit 2
  fi
fi
# The Node.js clients, at the versions package-lock.json pins.
if [[ ! -d tests/clients/node/node_modules/knex || ! -d tests/clients/node/node_modules/sequelize ||
      ! -d tests/clients/node/node_modules/typeorm ]]; then
  (cd tests/clients/node && npm ci --no-audit --no-fund --loglevel=error)
fi
# SQLite's sqllogictest corpus stays outside git. The workplace keeps select1-5 and
# evidence/ beside the repository (../shared/sqllogictest), so the test runs without network
# access; elsewhere it is fetched from GitHub. A missing corpus fails the run.
if [[ -z ${SHOAL_SLT_SOURCE:-} && -d ../shared/sqllogictest/test ]]; then
  export SHOAL_SLT_SOURCE=../shared/sqllogictest
fi
if [[ ! -s sqllogictest-corpus/select1.test ]] && ! scripts/fetch-sqllogictest.sh; then
  echo "scripts/test.sh: the sqllogictest corpus is missing and could not be fetched;" \
    "set SHOAL_SLT_SOURCE to a checkout of github.com/gregrahn/sqllogictest" >&2
  exit 2
fi
# Every test binary runs even when one fails (--no-fail-fast), so one failure hides no
# other; the summary at the end names every failed test. Cluster tests start several
# processes each; one at a time keeps a 2-core machine calm.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
failed=0
cargo test --all-targets --no-fail-fast "$@" -- --test-threads=1 2>&1 | tee "$log" || failed=1
# pyrqlite's own DB-API suite (vendored unchanged), each test class against a `shoal serve`
# started exactly as the suite starts rqlited.
tests/clients/run_pyrqlite_suite.sh 2>&1 | tee -a "$log" || failed=1
if ((failed)); then
  echo
  echo "=== scripts/test.sh: FAILED ==="
  # libtest prints `test NAME ... FAILED` per failed test, cargo `error: test failed, to
  # rerun pass `--test NAME`` per failed binary, pytest `FAILED path::test` per test.
  grep -E '^test .* \.\.\. FAILED$|^error: test failed|^error: [0-9]+ targets? failed|^    `--|^FAILED |^ERROR ' "$log" | awk '!seen[$0]++' || true
  exit 1
fi
echo "=== scripts/test.sh: all tests passed ==="
