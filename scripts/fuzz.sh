#!/usr/bin/env bash
# Runs every fuzz target in the module for a short time each (default 3s): the seed corpus
# and a few seconds of new inputs. Usage: scripts/fuzz.sh [duration]
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-3s}
count=0
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "fuzz: $pkg $target ($fuzztime)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" >/tmp/netauth-fuzz.log 2>&1 || {
      cat /tmp/netauth-fuzz.log
      echo "fuzz: $target FAILED"
      exit 1
    }
    count=$((count + 1))
  done
done
echo "fuzz: $count targets passed"
