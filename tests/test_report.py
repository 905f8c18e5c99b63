"""Recording a report-seed figure: report seeds only, once per policy."""
import json
import shutil
from pathlib import Path

import pytest

from training.export.report import ReportError, record_report

ROOT = Path(__file__).resolve().parents[1]


def evaluation(directory: Path, first_seed: int, successes: list) -> Path:
    """An evaluate.sh output directory with one shard."""
    shard = directory / "shard-0"
    shard.mkdir(parents=True)
    episodes = [{"episode_id": i, "reset_kwargs": {"seed": first_seed + i}} for i in range(len(successes))]
    (shard / "config.json").write_text(json.dumps({"env_info": {"env_id": "LiftCube-v0"}, "episodes": episodes}))
    (directory / "episode_results.json").write_text(json.dumps({str(i): {"success": s} for i, s in enumerate(successes)}))
    return directory


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    directory = tmp_path / "weights"
    directory.mkdir()
    shutil.copy(ROOT / "weights" / "manifest.json", directory)
    shutil.copy(ROOT / "weights" / "LiftCube-v0.onnx", directory)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["policies"] = {"LiftCube-v0": manifest["policies"]["LiftCube-v0"]}
    manifest["policies"]["LiftCube-v0"]["provenance"].pop("report", None)
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def test_a_report_figure_is_recorded_once_per_policy(weights: Path, tmp_path: Path) -> None:
    report = record_report(weights, "LiftCube-v0", evaluation(tmp_path / "a", 4_000_000, [True, True, False, True]))
    assert report["rate"] == 0.75 and report["episodes"] == 4 and report["seeds"] == "4000000-4000003"
    stored = json.loads((weights / "manifest.json").read_text())["policies"]["LiftCube-v0"]["provenance"]["report"]
    assert stored == report and stored["sha256"] == json.loads((weights / "manifest.json").read_text())[
        "policies"]["LiftCube-v0"]["sha256"]
    with pytest.raises(ReportError, match="scored there once"):
        record_report(weights, "LiftCube-v0", evaluation(tmp_path / "b", 4_000_100, [True]))


def test_selection_seeds_are_not_a_report(weights: Path, tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="not a report-seed evaluation"):
        record_report(weights, "LiftCube-v0", evaluation(tmp_path / "a", 2_000_000, [True, True]))
    with pytest.raises(ReportError, match="not a report-seed evaluation"):
        record_report(weights, "LiftCube-v0", evaluation(tmp_path / "b", 4_999_999, [True, True]))  # runs out


def test_an_external_check_gives_way_to_the_report_figure(weights: Path, tmp_path: Path) -> None:
    manifest = json.loads((weights / "manifest.json").read_text())
    entry = manifest["policies"]["LiftCube-v0"]
    external = {"rate": 1.0, "episodes": 50, "seeds": "unseen by the project (external check, issue 36)",
                "interval": [0.929, 1.0], "sha256": entry["sha256"], "date": "2026-12-06"}
    entry["provenance"]["report"] = external
    (weights / "manifest.json").write_text(json.dumps(manifest))
    report = record_report(weights, "LiftCube-v0", evaluation(tmp_path / "a", 4_000_000, [True, False]))
    provenance = json.loads((weights / "manifest.json").read_text())["policies"]["LiftCube-v0"]["provenance"]
    assert provenance["report"] == report and report["rate"] == 0.5
    assert provenance["external_check"] == external
    with pytest.raises(ReportError, match="scored there once"):  # the report-seed figure stays
        record_report(weights, "LiftCube-v0", evaluation(tmp_path / "b", 4_000_100, [True]))


def test_after_a_runtime_change_the_new_figure_replaces_the_old_one_which_is_kept(weights: Path, tmp_path: Path) -> None:
    first = record_report(weights, "LiftCube-v0", evaluation(tmp_path / "a", 4_000_000, [True, False]))
    second = record_report(weights, "LiftCube-v0", evaluation(tmp_path / "b", 4_000_000, [True, True]),
                           runtime_change="a cheaper fit")
    provenance = json.loads((weights / "manifest.json").read_text())["policies"]["LiftCube-v0"]["provenance"]
    assert provenance["report"] == second and second["rate"] == 1.0
    assert provenance["earlier_reports"] == [dict(first, replaced_because="a cheaper fit")]
