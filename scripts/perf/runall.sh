#!/bin/bash
# Runs the timing scripts back to back (never two at once), then exactness.
cd /work/scratch/perf
export PYTHONPATH=/work/scratch/edgespec-ref-src:/work/scratch/perf
PY=/work/main/.venv/bin/python
for s in "$@"; do
  name=${s%% *}
  echo "=== $s  $(date +%T) $(cat /proc/loadavg)"
  $PY $s 2>&1 | tee ${name%.py}.log
done
