#!/usr/bin/env bash
# Runs a planned grid (`gqcim compare --plan --run-dir R`) as a Slurm job array: only the
# units without a result are submitted (so the same command resumes), one array task per
# unit, then a merge job that runs after the array whatever its outcome
# (--dependency=afterany). With --wait it polls squeue (sbatch --wait backs off to tens of
# seconds) and prints the merged table.
#
#   scripts/slurm-grid.sh RUN_DIR [--wait] [-- extra sbatch options, e.g. --gres=gpu:1]
#
# GQCIM_BIN picks the binary (default target/release/gqcim); the run folder, data and
# checkpoint must be on a file system every compute node sees.
set -euo pipefail
RUN=${1:?usage: $0 RUN_DIR [--wait] [-- sbatch options]}
shift
WAIT=0
if [ "${1:-}" = --wait ]; then WAIT=1; shift; fi
[ "${1:-}" = -- ] && shift
BIN=$(realpath "${GQCIM_BIN:-target/release/gqcim}")
RUN=$(realpath "$RUN")
THREADS=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['threads'])" "$RUN/plan.json")
MISSING=$("$BIN" merge --run-dir "$RUN" --list-missing)
mkdir -p "$RUN/slurm"
ids=""
if [ -n "$MISSING" ]; then
  ids=$(sbatch --parsable --job-name=gqcim-cell --array="$MISSING" --cpus-per-task="$THREADS" \
    --output="$RUN/slurm/cell-%a.out" "$@" \
    --wrap="exec '$BIN' compare-cell --run-dir '$RUN' --index \$SLURM_ARRAY_TASK_ID")
  echo ">> submitted units $MISSING as array job $ids"
fi
dep=()
[ -n "$ids" ] && dep=(--dependency="afterany:$ids")
merge=$(sbatch --parsable --job-name=gqcim-merge "${dep[@]}" --output="$RUN/slurm/merge.out" \
  --wrap="exec '$BIN' merge --run-dir '$RUN'")
echo ">> merge job $merge"
if [ "$WAIT" = 1 ]; then
  while [ -n "$(squeue -h -j "${ids:+$ids,}$merge" 2>/dev/null)" ]; do sleep 0.5; done
  cat "$RUN/slurm/merge.out"
  if [ ! -f "$RUN/results.csv" ] || [ -n "$("$BIN" merge --run-dir "$RUN" --list-missing)" ]; then
    echo "grid incomplete: re-run this command to submit the missing units" >&2
    exit 1
  fi
fi
