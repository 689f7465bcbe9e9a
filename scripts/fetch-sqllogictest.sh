#!/usr/bin/env bash
# Brings SQLite's sqllogictest corpus into sqllogictest-corpus/ (kept outside git: the corpus
# is large and not ours). Sources, in order:
#   SHOAL_SLT_SOURCE=<dir>   a checkout (or bare git dir) of github.com/gregrahn/sqllogictest
#   otherwise                the GitHub tarball (needs network access to github.com)
# Usage: scripts/fetch-sqllogictest.sh [all]   (default: select1-5 and evidence/ only)
set -euo pipefail
cd "$(dirname "$0")/.."
dest=sqllogictest-corpus
wanted='^test/(select[1-5]\.test|evidence/.*\.test)$'
[[ "${1:-}" == all ]] && wanted='^test/.*\.test$'
mkdir -p "$dest"
source_dir="${SHOAL_SLT_SOURCE:-}"
if [[ -n "$source_dir" && -d "$source_dir" ]]; then
  if git -C "$source_dir" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$source_dir" ls-tree -r --name-only HEAD test | grep -E "$wanted" | while read -r f; do
      mkdir -p "$dest/$(dirname "${f#test/}")"
      git -C "$source_dir" show "HEAD:$f" >"$dest/${f#test/}" || echo "missing in $source_dir: $f" >&2
    done
  else
    (cd "$source_dir" && find test -name '*.test') | grep -E "$wanted" | while read -r f; do
      mkdir -p "$dest/$(dirname "${f#test/}")"
      cp "$source_dir/$f" "$dest/${f#test/}"
    done
  fi
else
  url=https://codeload.github.com/gregrahn/sqllogictest/tar.gz/refs/heads/master
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  curl -fsSL --connect-timeout 15 --max-time 300 "$url" | tar -xz -C "$tmp"
  (cd "$tmp"/sqllogictest-* && find test -name '*.test') | grep -E "$wanted" | while read -r f; do
    mkdir -p "$dest/$(dirname "${f#test/}")"
    cp "$tmp"/sqllogictest-*/"$f" "$dest/${f#test/}"
  done
fi
test -s "$dest/select1.test" || { echo "sqllogictest corpus not fetched" >&2; exit 1; }
echo "sqllogictest corpus in $dest: $(find "$dest" -name '*.test' | wc -l) files"
