"""scripts/evaluate.sh's helpers: episode configs split across evaluator processes, merged results."""
import json
from pathlib import Path

import pytest

from training.export.official_evaluation import episode_config, merge_dirs, merge_results, wilson_interval


def test_shards_cover_every_episode_once_with_its_seed() -> None:
    shards = [episode_config("PickCube-v0", 7, 1_000_000, k, 3)["episodes"] for k in range(3)]
    ids = sorted(e["episode_id"] for shard in shards for e in shard)
    assert ids == list(range(7))
    assert all(e["reset_kwargs"]["seed"] == 1_000_000 + e["episode_id"] for shard in shards for e in shard)
    assert episode_config("PickCube-v0", 3, 5)["episodes"] == [
        {"episode_id": i, "reset_kwargs": {"seed": 5 + i}} for i in range(3)]
    with pytest.raises(ValueError):
        episode_config("PickCube-v0", 3, 5, shard=2, n_shards=2)


def test_merge_orders_episodes_and_averages_every_metric() -> None:
    episodes, means = merge_results([{"1": {"success": True, "elapsed_steps": 10}, "3": {"success": False, "elapsed_steps": 50}},
                                     {"0": {"success": True, "elapsed_steps": 20}, "10": {"success": True, "elapsed_steps": 40}}])
    assert list(episodes) == ["0", "1", "3", "10"]
    assert means == {"elapsed_steps": 30.0, "success": 0.75}
    with pytest.raises(ValueError, match="two shards"):
        merge_results([{"0": {"success": True}}, {"0": {"success": False}}])


def test_wilson_interval_matches_published_values() -> None:
    low, high = wilson_interval(0.0, 100)
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(0.0370, abs=1e-4)
    low, high = wilson_interval(0.9, 100)
    assert (round(low, 3), round(high, 3)) == (0.826, 0.945)


def test_merge_dirs_writes_the_evaluators_files_and_names_a_missing_shard(tmp_path: Path) -> None:
    for k, results in enumerate([{"0": {"success": True}}, {"1": {"success": False}}]):
        shard = tmp_path / "shard-{}".format(k)
        shard.mkdir()
        (shard / "config.json").write_text(json.dumps(episode_config("LiftCube-v0", 2, 0, k, 2)))
        (shard / "episode_results.json").write_text(json.dumps(results))
    line = merge_dirs(tmp_path, [tmp_path / "shard-0", tmp_path / "shard-1"])
    assert line.startswith("LiftCube-v0: success rate 0.500 over 2 episodes")
    assert json.loads((tmp_path / "average_metrics.json").read_text()) == {"success": 0.5}
    assert list(json.loads((tmp_path / "episode_results.json").read_text())) == ["0", "1"]
    (tmp_path / "shard-1" / "episode_results.json").unlink()
    with pytest.raises(FileNotFoundError, match="shard-1"):
        merge_dirs(tmp_path, [tmp_path / "shard-0", tmp_path / "shard-1"])


def test_quiet_drops_exactly_sapiens_no_display_lines_and_passes_progress_bars_through() -> None:
    import io
    import os

    from training.export.official_evaluation import quiet

    glfw = (b"[2026-12-06 13:40:24.415] [svulkan2] [error] GLFW error: X11: The DISPLAY environment variable is "
            b"missing\n[2026-12-06 13:40:24.416] [svulkan2] [warning] Continue without GLFW.\n")
    kept = (b"[2026-12-06 13:40:25.000] [svulkan2] [error] GLFW error: something else\n"
            b"\r  0%|          | 0/2\r 50%|#####     | 1/2\r100%|##########| 2/2\nout/shard-1 already exists.\n")
    read, write = os.pipe()
    os.write(write, b"out/shard-0 already exists.\n" + glfw + kept + b"tail without newline")
    os.close(write)
    sink = io.BytesIO()
    quiet(read, sink, ["out/shard-0 already exists."])
    os.close(read)
    assert sink.getvalue() == kept + b"tail without newline"
