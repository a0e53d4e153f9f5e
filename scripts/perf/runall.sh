#!/bin/bash
# Runs the timing scripts back to back (never two at once), then exactness.
cd "$(dirname "$0")"
export PYTHONPATH="$EDGESPEC_REF:$PWD"
PY=${PY:-python}
for s in "$@"; do
  name=${s%% *}
  echo "=== $s  $(date +%T) $(cat /proc/loadavg)"
  $PY $s 2>&1 | tee ${name%.py}.log
done
