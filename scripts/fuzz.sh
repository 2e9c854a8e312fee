#!/usr/bin/env bash
# Runs every fuzz target in the module for a short time each (default 3s): the seed corpus,
# the corpus kept in each package's testdata/fuzz, and a few seconds of new inputs.
#
#   scripts/fuzz.sh [duration]            run every target
#   SAVE_CORPUS=1 scripts/fuzz.sh 30s     also keep up to 32 new interesting inputs per
#                                         target in its package's testdata/fuzz/<target>/
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-3s}
cache=$(go env GOCACHE)/fuzz
count=0
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "fuzz: $pkg $target ($fuzztime)"
    for attempt in 1 2 3; do
      if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" >/tmp/netauth-fuzz.log 2>&1; then
        break
      fi
      # Go's fuzzing engine sometimes ends a run with "context deadline exceeded" when a worker
      # is slow to stop on a busy machine; that names no failing input and is retried. Any real
      # failure writes its input to testdata/fuzz and stops here.
      if grep -q "Failing input written" /tmp/netauth-fuzz.log || ! grep -q "context deadline exceeded" /tmp/netauth-fuzz.log || [ "$attempt" = 3 ]; then
        cat /tmp/netauth-fuzz.log
        echo "fuzz: $target FAILED"
        exit 1
      fi
      echo "fuzz: $target: the fuzzing engine timed out stopping its workers (no failing input); retrying"
    done
    if [ "${SAVE_CORPUS:-}" = 1 ] && [ -d "$cache/$pkg/$target" ]; then
      mkdir -p "$dir/testdata/fuzz/$target"
      ls -t "$cache/$pkg/$target" | head -32 | while read -r f; do
        cp "$cache/$pkg/$target/$f" "$dir/testdata/fuzz/$target/"
      done
    fi
    count=$((count + 1))
  done
done
echo "fuzz: $count targets passed"
