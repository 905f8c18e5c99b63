"""The CLI: its process-wide setting (a fixed mmap threshold, glibc: see `fixed_mmap_threshold`), and its options,
whose defaults come from the config dataclasses, the PPO commands sharing one option set."""
import ctypes.util
import inspect
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Dict, List

import pytest
from typer.testing import CliRunner

import training.cli as cli
from training.algorithms.bc import BCConfig
from training.algorithms.distill import DistillConfig
from training.algorithms.ppo import PPOConfig
from training.algorithms.two_stage import RunConfig
from training.cli import PPOOptions, app, fixed_mmap_threshold


@pytest.mark.skipif(not sys.platform.startswith("linux") or ctypes.util.find_library("c") is None,
                    reason="glibc only")
def test_mmap_threshold_is_fixed_on_glibc() -> None:
    assert fixed_mmap_threshold()


def ppo_calls(monkeypatch: pytest.MonkeyPatch, *args: str) -> List[Dict[str, Any]]:
    """The `_ppo_run` calls of `ms2agent ARGS` (the run itself replaced)."""
    calls: List[Dict[str, Any]] = []
    monkeypatch.setattr(cli, "_ppo_run", lambda *a, **k: calls.append({"args": a, **k}))
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return calls


def test_the_ppo_commands_share_one_option_set_with_the_configs_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = ppo_calls(monkeypatch, "two-stage", "PickCube-v0")[0]
    env_id, stages, options = defaults["args"]
    assert (env_id, stages) == ("PickCube-v0", [1, 2])
    assert (options.batch_size, options.samples_per_iteration, options.lr) == (
        PPOConfig.batch_size, PPOConfig.samples_per_iteration, PPOConfig.lr)
    assert (options.eval_episodes, options.seed, options.freeze_pointnet) == (
        RunConfig.eval_episodes, RunConfig.seed, not PPOConfig.train_pointnet)
    assert (defaults["stage1_iterations"], defaults["stage2_iterations"]) == (
        RunConfig.stage1_iterations, RunConfig.stage2_iterations)
    assert (defaults["stage2_batch_factor"], defaults["stage2_samples_factor"]) == (
        RunConfig.stage2_batch_factor, RunConfig.stage2_samples_factor)
    shared = ["--batch-size", "12", "--lr", "3e-5", "--freeze-pointnet", "--held-fit", "--seed", "3"]
    for command, stages in (("train", [1]), ("finetune", [2]), ("two-stage", [1, 2])):
        call = ppo_calls(monkeypatch, command, "PlugCharger-v0", *shared)[0]
        options = call["args"][2]
        assert call["args"][1] == stages and isinstance(options, PPOOptions)
        assert (options.batch_size, options.lr, options.freeze_pointnet, options.held_fit, options.seed) == (
            12, 3e-5, True, True, 3)
    assert {item.name for item in fields(PPOOptions)} >= {"run_dir", "resume", "workers", "slot_reader"}


def test_distill_and_bc_options_default_to_their_configs() -> None:
    def option_defaults(name: str) -> Dict[str, Any]:
        command = next(c for c in app.registered_commands if (c.name or c.callback.__name__) == name)
        return {key: getattr(parameter.default, "default", None)
                for key, parameter in inspect.signature(command.callback).parameters.items()}

    distill = option_defaults("distill")
    for key in ("rounds", "samples_per_round", "updates_per_round", "batch_size", "train_points", "lr", "loss",
                "final_lr_factor", "expert_noise", "expert_share", "eval_episodes", "collect_episode_steps", "seed"):
        assert distill[key] == getattr(DistillConfig, key), key
    bc = option_defaults("bc")
    for key in ("updates", "batch_size", "eval_every", "eval_episodes", "seed", "max_episode_steps"):
        assert bc[key] == getattr(BCConfig, key), key


def refuse(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("started the simulator before checking the checkpoint")


@pytest.mark.parametrize("command", ["export", "evaluate"])
@pytest.mark.parametrize("damage", ["missing", "corrupt", "no model"])
def test_a_missing_or_corrupt_checkpoint_exits_naming_it_before_any_simulation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, damage: str) -> None:
    import torch

    import training.common.vec_env as vec_env
    import training.export.export as export

    monkeypatch.setattr(vec_env, "EnvWorkers", refuse)
    monkeypatch.setattr(export, "real_inputs", refuse)
    monkeypatch.setenv("COLUMNS", "500")  # the error box on one line
    checkpoint = tmp_path / "student.pt"
    if damage == "corrupt":
        checkpoint.write_bytes(b"\x80\x02not a checkpoint\nat all\n")
    elif damage == "no model":
        torch.save({"record": {"success": 1.0}}, checkpoint)
    extra = ["--weights-dir", str(tmp_path / "weights")] if command == "export" else []
    result = CliRunner().invoke(app, [command, "PickCube-v0", str(checkpoint), *extra])
    assert result.exit_code == 2, result.output
    expected = {"missing": "does not exist", "corrupt": "is corrupt or not a checkpoint", "no model": "holds no model"}
    (line,) = [line for line in result.output.splitlines() if "Invalid value" in line]
    assert "Checkpoint {} {}".format(checkpoint, expected[damage]) in line
    assert "Traceback" not in result.output and not (tmp_path / "weights").exists()


def test_export_names_the_flags_that_fit_or_another_task() -> None:
    from training.export.export import state_size_mismatch

    lift = {(False, False): 31, (True, False): 49}
    message = state_size_mismatch(Path("pick.pt"), 37, "LiftCube-v0", lift, "PickCube-v0")
    assert message == ("pick.pt takes a state of size 37, but LiftCube-v0 policies take 31 without a slot reader, 49 "
                       "with a slot reader: the checkpoint was probably trained for another task (PickCube-v0)")
    assert "--slot-reader" not in message
    plug = {(False, False): 31, (True, False): 49, (True, True): 64}
    assert state_size_mismatch(Path("s.pt"), 49, "PlugCharger-v0", plug).endswith(
        "the state of a PlugCharger-v0 policy with a slot reader: export it with --slot-reader (the slot reader it "
        "was trained with)")
    assert state_size_mismatch(Path("s.pt"), 64, "PlugCharger-v0", plug).endswith("and --held-fit")
    assert state_size_mismatch(Path("s.pt"), 31, "PlugCharger-v0", plug).endswith("export it without --slot-reader")
    assert state_size_mismatch(Path("s.pt"), 40, "PlugCharger-v0", plug, None).endswith("for another task")


def test_exporting_a_checkpoint_of_another_task_says_so_before_any_simulation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from training.common.checkpoints import model_checkpoint, save_checkpoint
    from training.common.networks import ActorCritic

    checkpoint = tmp_path / "stack.pt"  # a StackCube-v0 PPO checkpoint with LiftCube-v0's state size
    save_checkpoint(model_checkpoint(ActorCritic(31, 7, [-1.0] * 7, [1.0] * 7), config={"env_id": "StackCube-v0"}),
                    checkpoint)
    monkeypatch.setenv("COLUMNS", "500")
    monkeypatch.setattr("training.export.export.real_inputs", lambda *a, **k: pytest.fail("simulated"))
    result = CliRunner().invoke(app, ["export", "LiftCube-v0", str(checkpoint), "--weights-dir", str(tmp_path / "w")])
    assert result.exit_code == 2, result.output
    assert "{} was trained for StackCube-v0 (its run's config), not LiftCube-v0: export it as StackCube-v0, or pass " \
           "a LiftCube-v0 checkpoint".format(checkpoint) in result.output
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("command", [["evaluate", "Foo-v0", "x.pt"], ["export", "Foo-v0", "x.pt"],
                                     ["two-stage", "Foo-v0"], ["distill", "Foo-v0"]])
def test_an_unknown_env_id_is_a_usage_error_listing_the_known_ones(command: List[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "500")
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2, result.output
    assert "Unknown env id 'Foo-v0'. Known tasks: " in result.output and "PickCube-v0" in result.output


def test_every_collecting_command_takes_the_worker_backend_with_its_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from training.common.vec_env import Backend

    def option_defaults(name: str) -> Dict[str, Any]:
        command = next(c for c in app.registered_commands if (c.name or c.callback.__name__) == name)
        return {key: getattr(parameter.default, "default", None)
                for key, parameter in inspect.signature(command.callback).parameters.items()}

    expected = {"backend": Backend.kind, "address": Backend.address, "worker_timeout": Backend.timeout,
                "worker_restarts": Backend.max_restarts}
    for name in ("train", "finetune", "two-stage", "distill", "evaluate", "bc"):
        defaults = option_defaults(name)
        assert {key: defaults[key] for key in expected} == expected, name
    options = ppo_calls(monkeypatch, "train", "PickCube-v0", "--backend", "ray", "--address", "10.0.0.1:6379",
                        "--worker-timeout", "60", "--worker-restarts", "1")[0]["args"][2]
    assert (options.backend, options.address, options.worker_timeout, options.worker_restarts) == (
        "ray", "10.0.0.1:6379", 60.0, 1)


def test_the_worker_backend_is_checked_before_any_work(monkeypatch: pytest.MonkeyPatch) -> None:
    import typer

    from training.common.vec_env import Backend

    assert cli.worker_backend("local", None, 300.0, 3) == Backend()
    for arguments, message in ((("slurm", None, 300.0, 3), "not one of local, ray"),
                               (("local", "10.0.0.1:6379", 300.0, 3), "ray backend only"),
                               (("local", None, 0.0, 3), "timeout")):
        with pytest.raises(typer.BadParameter, match=message):
            cli.worker_backend(*arguments)
    real_find_spec = cli.importlib.util.find_spec
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: None if name == "ray" else real_find_spec(name))
    with pytest.raises(typer.BadParameter, match=r"pip install -e '\.\[cluster\]'"):
        cli.worker_backend("ray", None, 300.0, 3)
