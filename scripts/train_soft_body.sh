#!/usr/bin/env bash
# The soft-body track, for machines with an NVIDIA GPU: for each task, download ManiSkill2's demos
# (and the task's assets), convert them to pd_ee_delta_pose, behaviour-clone in two stages
# (`ms2agent bc`) and export the chosen checkpoint to weights/ (`ms2agent export`).
#
#   bash scripts/train_soft_body.sh [ENV_ID ...] [-- more `ms2agent bc` options]
#
# Default tasks: Excavate-v0 Fill-v0 Hang-v0 Pour-v0 Pinch-v0 Write-v0. WORKERS (default 4) sets the
# processes for demo conversion and evaluation. Re-running resumes: finished downloads and
# conversions are skipped and `ms2agent bc --resume` continues from the newest checkpoint.
# Needs: the NVIDIA driver, the CUDA toolkit (ManiSkill2 builds its warp library with nvcc on first
# use; set CUDA_HOME if nvcc is not on PATH) and, to train at GPU speed, a CUDA build of torch in
# .venv. Expected time per task: see docs/soft_body.md (an estimate, not measured on this project's
# CPU-only machines).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ENVS=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do ENVS+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#ENVS[@]} -gt 0 ] || ENVS=(Excavate-v0 Fill-v0 Hang-v0 Pour-v0 Pinch-v0 Write-v0)
WORKERS=${WORKERS:-4}

if [ ! -e /dev/nvidiactl ]; then
  echo "train_soft_body.sh: the soft-body tasks need a CUDA GPU (ManiSkill2 simulates them with warp MPM" \
       "on CUDA) and this machine has none. Nothing was done. See docs/soft_body.md." >&2
  exit 1
fi
CUDA_DIR=${CUDA_HOME:-${CUDA_PATH:-}}
if ! { [ -n "$CUDA_DIR" ] && [ -x "$CUDA_DIR/bin/nvcc" ]; } && ! command -v nvcc > /dev/null; then
  echo "train_soft_body.sh: the CUDA toolkit (nvcc) was not found; ManiSkill2 builds its warp library with" \
       "it. Install it, or set CUDA_HOME to its directory. Nothing was done." >&2
  exit 1
fi

bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
MS2AGENT="$ROOT/.venv/bin/ms2agent"
if ! "$PY" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
  echo "warning: torch in .venv cannot use the GPU, so BC trains on the CPU (days for 50k updates of" \
       "batch 256). Install a CUDA build of torch==2.13.0 into .venv to train at GPU speed." >&2
fi
"$PY" -m mani_skill2.utils.precompile_mpm  # builds warp and its kernels once, before parallel processes

for ENV_ID in "${ENVS[@]}"; do
  echo "== $ENV_ID"
  DEMOS="demos/v0/soft_body/$ENV_ID"
  [ -f "$DEMOS/trajectory.json" ] || "$PY" -m mani_skill2.utils.download_demo "$ENV_ID" -o demos
  "$PY" - "$ENV_ID" <<'PY'
import subprocess, sys
from agent.registry import get_task
from training.common.envs import missing_assets
for uid in missing_assets(get_task(sys.argv[1])):
    subprocess.run([sys.executable, "-m", "mani_skill2.utils.download_asset", uid, "-y"], check=True)
PY
  CONVERTED="$DEMOS/trajectory.none.pd_ee_delta_pose.h5"
  if [ ! -f "$CONVERTED.done" ]; then  # replay_trajectory does not resume: redo an interrupted one
    "$PY" -m mani_skill2.trajectory.replay_trajectory --traj-path "$DEMOS/trajectory.h5" \
      --target-control-mode pd_ee_delta_pose --obs-mode none --save-traj --num-procs "$WORKERS"
    touch "$CONVERTED.done"
  fi
  RUN="runs/$ENV_ID/bc"
  "$MS2AGENT" bc "$ENV_ID" "$CONVERTED" --run-dir "$RUN" --workers "$WORKERS" --resume "$@"
  CHECKPOINT=$("$PY" -c "import json, sys; print(json.load(open(sys.argv[1]))['checkpoint'])" "$RUN/result.json")
  "$MS2AGENT" export "$ENV_ID" "$CHECKPOINT" --command "bash scripts/train_soft_body.sh $ENV_ID $*"
done
