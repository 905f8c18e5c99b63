#!/usr/bin/env bash
# The main job: set up (idempotent), then run the official ManiSkill2 evaluator
# (python -m mani_skill2.evaluation.run_evaluation) and print the success rate.
#
#   bash scripts/evaluate.sh [ENV_ID] [EPISODES] [FIRST_SEED] [-- more run_evaluation options]
#
# Defaults: PickCube-v0, 10 episodes, seeds 1000000, 1000001, ... (never used in training).
# Results land in eval_out/ENV_ID/ (average_metrics.json, episode_results.json).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ENV_ID=${1:-PickCube-v0}
EPISODES=${2:-10}
FIRST_SEED=${3:-1000000}
shift $(( $# < 3 ? $# : 3 )); [ "${1:-}" = "--" ] && shift

bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
OUT="$ROOT/eval_out/$ENV_ID"
mkdir -p "$OUT"
"$PY" - "$ENV_ID" "$EPISODES" "$FIRST_SEED" > "$OUT/config.json" <<'PY'
import json, sys
env_id, episodes, first_seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
print(json.dumps({"env_info": {"env_id": env_id},
                  "episodes": [{"episode_id": i, "reset_kwargs": {"seed": first_seed + i}}
                               for i in range(episodes)]}))
PY
eval "$("$PY" -m agent.vulkan_fallback)"  # for evaluator options that skip user_solution
"$PY" -m mani_skill2.evaluation.run_evaluation -e "$ENV_ID" -o "$OUT" --config-file "$OUT/config.json" "$@"
"$PY" - "$OUT/average_metrics.json" "$ENV_ID" "$EPISODES" <<'PY'
import json, math, sys
metrics = json.load(open(sys.argv[1]))
p, n, z = metrics["success"], int(sys.argv[3]), 1.96
# 95 % Wilson score interval of the success rate
centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
low, high = (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)
print("{}: success rate {:.3f} over {} episodes (official evaluator; 95 % Wilson interval {:.2f}-{:.2f})".format(
    sys.argv[2], p, n, low, high))
PY
