#!/usr/bin/env bash
# The rigid-body recipe, each task's commands spelled out: measure the privileged expert, distil it into a
# point-cloud student (BC + DAgger, `ms2agent distill`), fine-tune the student with two-stage PPO
# (`ms2agent two-stage --init-from`), export the chosen checkpoint to weights/ and score it with the official
# evaluator on 100 held-out episodes (scripts/evaluate.sh). The insertion tasks (PegInsertionSide-v0,
# PlugCharger-v0) get a slot reader (`ms2agent train-slot-reader`) after the distillation, and their student is
# distilled again into a looking policy (`distill --slot-reader --init-from STUDENT`) that PPO fine-tunes and
# export ships; PlugCharger-v0's also fits the object in its hand (`--held-fit`). A rigid-body task without a
# scripted expert (PickSingleYCB-v0, PickSingleEGAD-v0, TurnFaucet-v0, ...: its assets downloaded first) gets a
# learned teacher instead: PPO on the simulator's state (`ms2agent teacher`), measured on 100 selection episodes,
# then distilled (`distill --teacher`) and fine-tuned like the others. Options left out take the CLI's defaults
# (`ms2agent COMMAND --help`).
#
#   bash scripts/train_rigid_body.sh [ENV_ID ...]
#
# Default tasks: PickCube-v0 LiftCube-v0 StackCube-v0 PegInsertionSide-v0 PlugCharger-v0.
# Re-running resumes every step: finished distillation rounds, PPO and teacher iterations are kept, as are the
# expert's and the teacher's measurements (the teacher's measured again if its run chose another checkpoint) and a
# trained slot reader. EVAL_WORKERS=N splits the official evaluation
# (scripts/evaluate.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ENVS=("$@")
[ ${#ENVS[@]} -gt 0 ] || ENVS=(PickCube-v0 LiftCube-v0 StackCube-v0 PegInsertionSide-v0 PlugCharger-v0)

bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
ms2agent() { "$ROOT/.venv/bin/ms2agent" "$@"; }
json_field() { "$ROOT/.venv/bin/python" -c "import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }
measured_checkpoint() {  # FILE: the checkpoint an `ms2agent evaluate` output names; nothing without the file
  [ ! -f "$1" ] || "$ROOT/.venv/bin/python" -c "import json, sys; print(json.load(open(sys.argv[1])).get('checkpoint', ''))" "$1"
}

expert() {  # ENV_ID: the privileged expert's success on 100 state-observation episodes (runs/ENV_ID/expert.json)
  echo "== $1: expert"
  mkdir -p "runs/$1"
  if [ ! -f "runs/$1/expert.json" ]; then
    ms2agent expert "$1" --episodes 100 --first-seed 100 > "runs/$1/expert.json.tmp"
    mv "runs/$1/expert.json.tmp" "runs/$1/expert.json"
  fi
  cat "runs/$1/expert.json"
}

ship() {  # ENV_ID STUDENT [--slot-reader READER [--held-fit]]: two-stage PPO from the student (its stage-1
  # iteration 0), export of the chosen checkpoint, official evaluation, learning curve (runs/ENV_ID/learning_curve.png)
  local env_id=$1 student=$2
  shift 2
  echo "== $env_id: two-stage PPO from $student"
  ms2agent two-stage "$env_id" --resume --init-from "$student" --init-log-std -2.3 --freeze-pointnet \
    --stage1-iterations 2 --stage2-iterations 1 --samples-per-iteration 4000 --lr 3e-5 "$@"
  echo "== $env_id: export and official evaluation"
  ms2agent export "$env_id" "$(json_field "runs/$env_id/ppo/result.json" checkpoint)" \
    --command "bash scripts/train_rigid_body.sh $env_id" "$@"
  bash scripts/evaluate.sh "$env_id" 100
  ms2agent plot "runs/$env_id"
}

recipe_PickCube_v0() {
  expert PickCube-v0
  ms2agent distill PickCube-v0
  ship PickCube-v0 "$(json_field runs/PickCube-v0/distill/result.json student)"
}

recipe_LiftCube_v0() {
  expert LiftCube-v0
  ms2agent distill LiftCube-v0
  ship LiftCube-v0 "$(json_field runs/LiftCube-v0/distill/result.json student)"
}

recipe_StackCube_v0() {  # its student needs longer fits
  expert StackCube-v0
  ms2agent distill StackCube-v0 --rounds 12 --updates-per-round 6000
  ship StackCube-v0 "$(json_field runs/StackCube-v0/distill/result.json student)"
}

recipe_PegInsertionSide_v0() {  # more scenes per round (shorter collection episodes); L1 fits the small corrections
  expert PegInsertionSide-v0
  ms2agent distill PegInsertionSide-v0 --rounds 14 --samples-per-round 6000 --updates-per-round 2000 --loss l1 \
    --collect-episode-steps 120
  ms2agent train-slot-reader PegInsertionSide-v0  # writes runs/PegInsertionSide-v0/slot_reader.onnx
  ms2agent distill PegInsertionSide-v0 --slot-reader runs/PegInsertionSide-v0/slot_reader.onnx \
    --run-dir runs/PegInsertionSide-v0/looking \
    --init-from "$(json_field runs/PegInsertionSide-v0/distill/result.json student)" \
    --expert-share 0.25 --loss l1 --samples-per-round 6000 --updates-per-round 2000 --train-points 600 \
    --collect-episode-steps 160
  ship PegInsertionSide-v0 "$(json_field runs/PegInsertionSide-v0/looking/result.json student)" \
    --slot-reader runs/PegInsertionSide-v0/slot_reader.onnx
}

recipe_PlugCharger_v0() {  # as PegInsertionSide-v0, with the held-object fit and 12,000 looking samples per round
  expert PlugCharger-v0
  ms2agent distill PlugCharger-v0 --rounds 14 --samples-per-round 6000 --updates-per-round 2000 --loss l1 \
    --collect-episode-steps 120
  ms2agent train-slot-reader PlugCharger-v0  # writes runs/PlugCharger-v0/slot_reader.onnx
  ms2agent distill PlugCharger-v0 --slot-reader runs/PlugCharger-v0/slot_reader.onnx --held-fit \
    --run-dir runs/PlugCharger-v0/looking --init-from "$(json_field runs/PlugCharger-v0/distill/result.json student)" \
    --expert-share 0.25 --loss l1 --samples-per-round 12000 --updates-per-round 2000 --train-points 600 \
    --collect-episode-steps 160
  ship PlugCharger-v0 "$(json_field runs/PlugCharger-v0/looking/result.json student)" \
    --slot-reader runs/PlugCharger-v0/slot_reader.onnx --held-fit
}

recipe_with_teacher() {  # ENV_ID: a rigid-body task without a scripted expert. `ms2agent teacher` refuses a
  # soft-body or unknown task, or one whose assets are missing (naming the download command), before any work
  local env_id=$1
  echo "== $env_id: learned teacher (PPO on the simulator's state)"
  ms2agent teacher "$env_id" --resume
  local teacher
  teacher=$(json_field "runs/$env_id/teacher/result.json" checkpoint)
  # its success on 100 full-length selection episodes, measured again when the run has chosen another checkpoint
  if [ "$(measured_checkpoint "runs/$env_id/teacher.json")" != "$teacher" ]; then
    ms2agent evaluate "$env_id" "$teacher" --episodes 100 > "runs/$env_id/teacher.json.tmp"
    mv "runs/$env_id/teacher.json.tmp" "runs/$env_id/teacher.json"
  fi
  cat "runs/$env_id/teacher.json"
  ms2agent distill "$env_id" --teacher "runs/$env_id/teacher"
  ship "$env_id" "$(json_field "runs/$env_id/distill/result.json" student)"
}

for ENV_ID in "${ENVS[@]}"; do
  RECIPE="recipe_${ENV_ID//-/_}"
  if declare -F "$RECIPE" > /dev/null; then
    "$RECIPE"  # a task with a scripted expert
  else
    recipe_with_teacher "$ENV_ID"
  fi
done
