"""scripts/train_rigid_body.sh: a task with a scripted expert runs its own recipe; a rigid-body task without one
trains a learned teacher first and distils it. Checked on the commands the script runs (ms2agent, setup and the
official evaluation replaced by stubs that log their arguments)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parents[1]


def recipe_commands(tmp_path: Path, env_id: str) -> List[str]:
    """The commands `bash scripts/train_rigid_body.sh ENV_ID` runs, in a copy of the scripts folder whose setup,
    evaluation and ms2agent only log their arguments (each run's result.json is there beforehand)."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "train_rigid_body.sh", tmp_path / "scripts")
    log = tmp_path / "commands.log"
    for name in ("setup.sh", "evaluate.sh"):
        (tmp_path / "scripts" / name).write_text('echo "{} $*" >> {}\n'.format(name, log))
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "ms2agent").write_text('#!/usr/bin/env bash\necho "ms2agent $*" >> {}\necho "{{}}"\n'.format(log))
    (bin_dir / "ms2agent").chmod(0o755)
    os.symlink(sys.executable, bin_dir / "python")
    for run, key in (("teacher", "checkpoint"), ("distill", "student"), ("ppo", "checkpoint")):
        (tmp_path / "runs" / env_id / run).mkdir(parents=True)
        (tmp_path / "runs" / env_id / run / "result.json").write_text(json.dumps({key: "{}.pt".format(run)}))
    return rerun(tmp_path, env_id)


def rerun(tmp_path: Path, env_id: str) -> List[str]:
    """The commands a run of the script in `recipe_commands`'s copy runs now."""
    log = tmp_path / "commands.log"
    log.write_text("")
    result = subprocess.run(["bash", str(tmp_path / "scripts" / "train_rigid_body.sh"), env_id], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return log.read_text().splitlines()


def test_a_task_without_a_scripted_expert_trains_a_learned_teacher_first(tmp_path: Path) -> None:
    commands = recipe_commands(tmp_path, "PickSingleEGAD-v0")
    assert [" ".join(command.split()[:2]) for command in commands] == [
        "setup.sh", "ms2agent teacher", "ms2agent evaluate", "ms2agent distill", "ms2agent two-stage",
        "ms2agent export", "evaluate.sh PickSingleEGAD-v0", "ms2agent plot"]
    assert commands[1] == "ms2agent teacher PickSingleEGAD-v0 --resume"
    assert commands[2] == "ms2agent evaluate PickSingleEGAD-v0 teacher.pt --episodes 100"
    assert commands[3] == "ms2agent distill PickSingleEGAD-v0 --teacher runs/PickSingleEGAD-v0/teacher"
    assert "--init-from distill.pt" in commands[4] and commands[5].startswith("ms2agent export PickSingleEGAD-v0 ppo.pt")
    assert (tmp_path / "runs" / "PickSingleEGAD-v0" / "teacher.json").exists()


def test_the_teacher_is_measured_again_only_when_its_run_chose_another_checkpoint(tmp_path: Path) -> None:
    recipe_commands(tmp_path, "PickSingleEGAD-v0")
    run = tmp_path / "runs" / "PickSingleEGAD-v0"
    (run / "teacher.json").write_text(json.dumps({"checkpoint": "teacher.pt", "success": 0.5}))
    assert not any(command.startswith("ms2agent evaluate") for command in rerun(tmp_path, "PickSingleEGAD-v0"))
    (run / "teacher" / "result.json").write_text(json.dumps({"checkpoint": "better.pt"}))  # continued, chose anew
    assert "ms2agent evaluate PickSingleEGAD-v0 better.pt --episodes 100" in rerun(tmp_path, "PickSingleEGAD-v0")


def test_a_task_with_a_scripted_expert_keeps_its_recipe(tmp_path: Path) -> None:
    commands = recipe_commands(tmp_path, "LiftCube-v0")
    assert commands[1] == "ms2agent expert LiftCube-v0 --episodes 100 --first-seed 100"
    assert not any("teacher" in command for command in commands)
