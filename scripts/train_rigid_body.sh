#!/usr/bin/env bash
# The rigid-body recipe, one command per task: measure the privileged expert, distil it into a
# point-cloud student (BC + DAgger, `ms2agent distill`), fine-tune the student with two-stage PPO
# (`ms2agent two-stage --init-from`), export the chosen checkpoint to weights/ and score it with the
# official evaluator on held-out seeds (scripts/evaluate.sh). A looking task (LOOKING_TASKS) gets a
# slot reader (`ms2agent train-slot-reader`) after the distillation, and its student is distilled again
# into a looking policy (`distill --slot-reader --init-from STUDENT`) that PPO fine-tunes and export ships;
# a held-fit task (HELD_FIT_TASKS) also fits the object in its hand (`--held-fit` on all three).
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
#   LOOKING_TASKS HELD_FIT_TASKS READER_EPISODES READER_UPDATES LOOK_ROUNDS LOOK_SAMPLES
#                                                         looking tasks (default: PegInsertionSide-v0 PlugCharger-v0),
#                                                         held-fit tasks (default: PlugCharger-v0); the reader's
#                                                         4000 look views and 5000 updates; 8 looking distillation
#                                                         rounds (6000 samples; PlugCharger-v0 12000, as its shipped
#                                                         run; a quarter from the noise-free expert, 2000 L1 updates
#                                                         on 600-point clouds, episodes <= 160 steps)
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
LOOKING_TASKS=${LOOKING_TASKS-PegInsertionSide-v0 PlugCharger-v0}
HELD_FIT_TASKS=${HELD_FIT_TASKS-PlugCharger-v0}
READER_EPISODES=${READER_EPISODES:-4000}
READER_UPDATES=${READER_UPDATES:-5000}
LOOK_ROUNDS=${LOOK_ROUNDS:-8}

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

  LOOK=()
  if [[ " $LOOKING_TASKS " == *" $ENV_ID "* ]]; then
    READER="runs/$ENV_ID/slot_reader.onnx"
    echo "== $ENV_ID: slot reader ($READER_EPISODES look views, $READER_UPDATES updates; kept when re-run)"
    "$MS2AGENT" train-slot-reader "$ENV_ID" --episodes "$READER_EPISODES" --updates "$READER_UPDATES" --out "$READER"
    LOOK=(--slot-reader "$READER")
    [[ " $HELD_FIT_TASKS " != *" $ENV_ID "* ]] || LOOK+=(--held-fit)
    look_samples=6000; [ "$ENV_ID" != PlugCharger-v0 ] || look_samples=12000
    look_samples=${LOOK_SAMPLES:-$look_samples}
    echo "== $ENV_ID: looking distillation from $STUDENT ($LOOK_ROUNDS rounds of $look_samples samples; ${LOOK[*]})"
    "$MS2AGENT" distill "$ENV_ID" "${LOOK[@]}" --run-dir "runs/$ENV_ID/looking" --init-from "$STUDENT" \
      --expert-share 0.25 --loss l1 --samples-per-round "$look_samples" --updates-per-round 2000 --train-points 600 \
      --collect-episode-steps 160 --rounds "$LOOK_ROUNDS"
    STUDENT=$(json_field "runs/$ENV_ID/looking/result.json" student)
  fi

  echo "== $ENV_ID: two-stage PPO from $STUDENT (the student itself is stage 1's iteration 0)"
  "$MS2AGENT" two-stage "$ENV_ID" --resume --init-from "$STUDENT" --init-log-std "$INIT_LOG_STD" --freeze-pointnet \
    --stage1-iterations "$STAGE1" --stage2-iterations "$STAGE2" --samples-per-iteration "$PPO_SAMPLES" \
    --batch-size "$PPO_BATCH" --lr "$PPO_LR" ${LOOK[@]+"${LOOK[@]}"}

  echo "== $ENV_ID: export and official evaluation"
  "$MS2AGENT" export "$ENV_ID" "$(json_field "runs/$ENV_ID/ppo/result.json" checkpoint)" \
    --command "bash scripts/train_rigid_body.sh $ENV_ID" ${LOOK[@]+"${LOOK[@]}"}
  bash scripts/evaluate.sh "$ENV_ID" "$EVAL_EPISODES"
  "$MS2AGENT" plot "runs/$ENV_ID"  # runs/ENV_ID/learning_curve.png: distillation, then both PPO stages
done
