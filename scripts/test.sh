#!/usr/bin/env bash
# Runs Shoal's whole test suite: unit tests and the multi-process cluster tests, including the
# pyrqlite, psycopg and SQLAlchemy sessions, psql, chromium and an S3 server (moto) (installed here if missing). Usage: scripts/test.sh [cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c 'import pyrqlite, psycopg, sqlalchemy, moto.server, pytest, pytest_timeout' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check -r tests/clients/requirements.txt
fi
# psql drives the PostgreSQL endpoint in the tests, as a user would; chromium loads the
# dashboard.
missing=()
command -v psql >/dev/null || missing+=(postgresql-client)
command -v chromium >/dev/null || missing+=(chromium)
command -v sqlite3 >/dev/null || missing+=(sqlite3)
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "scripts/test.sh: needs ${missing[*]} (Debian packages)" >&2; exit 2
  fi
fi
# SQLite's sqllogictest corpus stays outside git; fetch it when missing. Without network
# access the SQL-correctness test is skipped with a warning instead of failing the run.
# The workplace keeps select1-5 and evidence/ beside the repository (../shared/sqllogictest),
# so CI runs the test without network access.
if [[ -z ${SHOAL_SLT_SOURCE:-} && -d ../shared/sqllogictest/test ]]; then
  export SHOAL_SLT_SOURCE=../shared/sqllogictest
fi
if [[ ! -s sqllogictest-corpus/select1.test ]] && ! scripts/fetch-sqllogictest.sh; then
  echo "WARNING: sqllogictest corpus unavailable; its test will be SKIPPED" >&2
  export SHOAL_SLT_SKIP_IF_MISSING=1
fi
# Cluster tests start several processes each; one at a time keeps a 2-core machine calm.
cargo test --all-targets "$@" -- --test-threads=1
# pyrqlite's own DB-API suite (vendored unchanged), each test class against a `shoal serve`
# started exactly as the suite starts rqlited.
tests/clients/run_pyrqlite_suite.sh
