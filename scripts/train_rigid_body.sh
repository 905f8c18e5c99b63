#!/usr/bin/env bash
# The rigid-body recipe, one command per task: measure the privileged expert, distil it into a
# point-cloud student (BC + DAgger, `ms2agent distill`), fine-tune the student with two-stage PPO
# (`ms2agent two-stage --init-from`), export the chosen checkpoint to weights/ and score it with the
# official evaluator on held-out seeds (scripts/evaluate.sh).
#
#   bash scripts/train_rigid_body.sh [ENV_ID ...]
#
# Default tasks: PickCube-v0 LiftCube-v0 StackCube-v0 PegInsertionSide-v0 PlugCharger-v0.
# Re-running resumes every step: finished distillation rounds and PPO iterations are kept.
# The compute is set by environment variables (defaults: the settings of the README's runs):
#   ROUNDS SAMPLES_PER_ROUND UPDATES_PER_ROUND COLLECT_EPISODE_STEPS BC_LOSS TRAIN_POINTS
#                                                         distillation: 8 rounds of 4000 samples and
#                                                         3000 MSE updates; StackCube-v0 12 rounds of
#                                                         6000 updates (its student needs longer fits);
#                                                         PegInsertionSide-v0 and PlugCharger-v0 14 rounds
#                                                         of 6000 samples in episodes of <= 120 steps (more
#                                                         scenes per round), 2000 L1 updates (their small
#                                                         corrections must be fitted);
#                                                         COLLECT_EPISODE_STEPS= (empty): the task's limit;
#                                                         TRAIN_POINTS: camera points per cloud in BC
#                                                         updates (default 300; 0: all of them)
#   STAGE1 STAGE2 PPO_SAMPLES PPO_BATCH PPO_LR INIT_LOG_STD
#                                                         two-stage PPO (stage 2: batch x0.9, samples x0.875)
#   EVAL_EPISODES EVAL_WORKERS                            official evaluator episodes (seeds 1,000,000+),
#                                                         split over EVAL_WORKERS processes (scripts/evaluate.sh)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ENVS=("$@")
[ ${#ENVS[@]} -gt 0 ] || ENVS=(PickCube-v0 LiftCube-v0 StackCube-v0 PegInsertionSide-v0 PlugCharger-v0)
STAGE1=${STAGE1:-2}
STAGE2=${STAGE2:-1}
PPO_SAMPLES=${PPO_SAMPLES:-4000}
PPO_BATCH=${PPO_BATCH:-330}
PPO_LR=${PPO_LR:-3e-5}
INIT_LOG_STD=${INIT_LOG_STD:--2.3}
EVAL_EPISODES=${EVAL_EPISODES:-100}

bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
MS2AGENT="$ROOT/.venv/bin/ms2agent"
json_field() { "$PY" -c "import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

for ENV_ID in "${ENVS[@]}"; do
  echo "== $ENV_ID: expert (state observations, 100 episodes)"
  mkdir -p "runs/$ENV_ID"
  if [ ! -f "runs/$ENV_ID/expert.json" ]; then
    "$MS2AGENT" expert "$ENV_ID" --episodes 100 --first-seed 100 > "runs/$ENV_ID/expert.json.tmp"
    mv "runs/$ENV_ID/expert.json.tmp" "runs/$ENV_ID/expert.json"
  fi
  cat "runs/$ENV_ID/expert.json"

  case "$ENV_ID" in
    StackCube-v0) rounds=12; updates=6000; samples=4000; episode_steps=""; loss=mse ;;
    PegInsertionSide-v0|PlugCharger-v0) rounds=14; updates=2000; samples=6000; episode_steps=120; loss=l1 ;;
    *) rounds=8; updates=3000; samples=4000; episode_steps=""; loss=mse ;;  # "": the task's own time limit
  esac
  rounds=${ROUNDS:-$rounds}; updates=${UPDATES_PER_ROUND:-$updates}; loss=${BC_LOSS:-$loss}
  samples=${SAMPLES_PER_ROUND:-$samples}; episode_steps=${COLLECT_EPISODE_STEPS-$episode_steps}
  train_points=${TRAIN_POINTS:-300}
  limit=(); [ -z "$episode_steps" ] || limit=(--collect-episode-steps "$episode_steps")
  echo "== $ENV_ID: distillation ($rounds rounds of $samples samples, $updates $loss updates on $train_points-point clouds${episode_steps:+, collection episodes of <= $episode_steps steps})"
  "$MS2AGENT" distill "$ENV_ID" --rounds "$rounds" --samples-per-round "$samples" \
    --updates-per-round "$updates" --loss "$loss" --train-points "$train_points" ${limit[@]+"${limit[@]}"}
  STUDENT=$(json_field "runs/$ENV_ID/distill/result.json" student)  # the round with the best selection success

  echo "== $ENV_ID: two-stage PPO from $STUDENT (the student itself is stage 1's iteration 0)"
  "$MS2AGENT" two-stage "$ENV_ID" --resume --init-from "$STUDENT" --init-log-std "$INIT_LOG_STD" --freeze-pointnet \
    --stage1-iterations "$STAGE1" --stage2-iterations "$STAGE2" --samples-per-iteration "$PPO_SAMPLES" \
    --batch-size "$PPO_BATCH" --lr "$PPO_LR"

  echo "== $ENV_ID: export and official evaluation"
  "$MS2AGENT" export "$ENV_ID" "$(json_field "runs/$ENV_ID/ppo/result.json" checkpoint)" \
    --command "bash scripts/train_rigid_body.sh $ENV_ID"
  bash scripts/evaluate.sh "$ENV_ID" "$EVAL_EPISODES"
  "$MS2AGENT" plot "runs/$ENV_ID"  # runs/ENV_ID/learning_curve.png: distillation, then both PPO stages
done
