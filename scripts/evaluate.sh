#!/usr/bin/env bash
# The main job: set up (idempotent), then run the official ManiSkill2 evaluator
# (python -m mani_skill2.evaluation.run_evaluation) and print the success rate.
#
#   [EVAL_WORKERS=N] bash scripts/evaluate.sh [ENV_ID] [EPISODES] [FIRST_SEED] [-- more run_evaluation options]
#
# Defaults: PickCube-v0, 10 episodes, report seeds 4000000, 4000001, ... (training/common/seeds.py).
# The episodes are split over EVAL_WORKERS evaluator processes (default: one per core, at most 4;
# every episode plays out exactly as in a single process). Results land in eval_out/ENV_ID/
# (average_metrics.json, episode_results.json: all episodes; EVAL_OUT=DIR writes DIR/ENV_ID/
# instead); each process's own output, log and config in shard-K/.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ENV_ID=${1:-PickCube-v0}
EPISODES=${2:-10}
FIRST_SEED=${3:-4000000}
WORKERS=${EVAL_WORKERS:-$(( $(nproc) < 4 ? $(nproc) : 4 ))}
shift $(( $# < 3 ? $# : 3 )); [ "${1:-}" = "--" ] && shift

bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
[ "$WORKERS" -le "$EPISODES" ] || WORKERS=$EPISODES
OUT="${EVAL_OUT:-$ROOT/eval_out}/$ENV_ID"
mkdir -p "$OUT"
rm -rf "$OUT"/shard-*
eval "$("$PY" -m agent.vulkan_fallback)"  # for evaluator options that skip user_solution
SHARDS=() PIDS=()
trap 'kill $(jobs -p) 2> /dev/null || true' EXIT  # no evaluator outlives a failed or interrupted run
for ((k = WORKERS - 1; k >= 0; k--)); do  # shard 0 last, in the foreground: its progress bar shows
  SHARD="$OUT/shard-$k"
  mkdir -p "$SHARD"
  "$PY" -m training.export.official_evaluation config "$ENV_ID" "$EPISODES" "$FIRST_SEED" "$k" "$WORKERS" > "$SHARD/config.json"
  evaluate=("$PY" -m mani_skill2.evaluation.run_evaluation -e "$ENV_ID" -o "$SHARD" --config-file "$SHARD/config.json" "$@")
  SHARDS+=("$SHARD")
  if [ "$k" -gt 0 ]; then
    "${evaluate[@]}" > "$SHARD/evaluator.log" 2>&1 &
    PIDS+=($!)
  else
    "${evaluate[@]}" 2>&1 | tee "$SHARD/evaluator.log"
  fi
done
for pid in ${PIDS[@]+"${PIDS[@]}"}; do wait "$pid" || echo "an evaluator process failed (logs: $OUT/shard-*/evaluator.log)" >&2; done
"$PY" -m training.export.official_evaluation merge "$OUT" "${SHARDS[@]}"
