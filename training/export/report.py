"""A shipped policy's held-out figure: its report-seed score, recorded once in its manifest provenance.

`record_report` reads what `scripts/evaluate.sh` wrote for a task (OUT/episode_results.json and the shards'
OUT/shard-*/config.json), checks that every episode was played on a report seed (`training.common.seeds`)
and that the policy now in the manifest (its sha256) has no report figure yet: a policy is scored on report
seeds once, after it was chosen on selection seeds. The figure joins the entry's provenance as
`report: {rate, episodes, seeds, interval, sha256, date}`; a report figure from before, of an external check on
seeds the project never saw (not report seeds), moves to `external_check`.
"""
import datetime
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from agent.manifest import read_manifest, write_entry
from training.common.seeds import check
from training.export.official_evaluation import wilson_interval


class ReportError(ValueError):
    pass


def evaluated_seeds(eval_dir: Path) -> List[int]:
    """The seeds of the episodes in an evaluate.sh output directory, in episode order."""
    seeds: Dict[int, int] = {}
    for config in sorted(Path(eval_dir).glob("shard-*/config.json")):
        for episode in json.loads(config.read_text())["episodes"]:
            seeds[int(episode["episode_id"])] = int(episode["reset_kwargs"]["seed"])
    if not seeds:
        raise ReportError("{} holds no shard-*/config.json: run bash scripts/evaluate.sh ENV_ID EPISODES "
                          "FIRST_SEED first".format(eval_dir))
    return [seeds[key] for key in sorted(seeds)]


def evaluated_episodes(eval_dir: Path) -> Dict[int, bool]:
    """Success per seed of an evaluate.sh output directory, in episode order; ReportError if the evaluation did not
    finish or its results and shard configs disagree."""
    results_file = Path(eval_dir) / "episode_results.json"
    if not results_file.is_file():
        raise ReportError("{} is missing: the evaluation did not finish".format(results_file))
    results = json.loads(results_file.read_text())
    seeds = evaluated_seeds(Path(eval_dir))
    if len(seeds) != len(results):
        raise ReportError("{} holds {} episodes but its shard configs {}".format(eval_dir, len(results), len(seeds)))
    return {seed: bool(results[key]["success"]) for seed, key in zip(seeds, sorted(results, key=int))}


def record_report(weights_dir: Path, env_id: str, eval_dir: Path, runtime_change: Optional[str] = None
                  ) -> Dict[str, Any]:
    """Add the report-seed figure in `eval_dir` to `env_id`'s manifest entry; returns it. ReportError if the
    episodes were not all report seeds, if they do not match the results, or if this policy already has one, unless
    `runtime_change` says what changed in the runtime since (no weight changed): the new figure then replaces it
    and the replaced one is kept in `earlier_reports`, with the reason."""
    entries = read_manifest(weights_dir)
    if env_id not in entries:
        raise ReportError("{} has no policy in {}".format(env_id, weights_dir / "manifest.json"))
    entry = entries[env_id]
    successes = evaluated_episodes(eval_dir)
    seeds = list(successes)
    try:
        for seed in seeds:
            check("report", seed)
    except ValueError as error:
        raise ReportError("not a report-seed evaluation: {}".format(error)) from None
    previous = entry.provenance.get("report") or {}
    provenance = dict(entry.provenance)
    if previous and not on_report_seeds(previous):  # an external check on seeds the project never saw: kept aside
        provenance["external_check"] = provenance.pop("report")
    elif previous.get("sha256") == entry.sha256 and not runtime_change:
        raise ReportError("{}'s policy ({}) was already scored on report seeds ({} over {} episodes): a policy is "
                          "scored there once (after a change of the runtime alone, pass --runtime-change saying "
                          "what changed)".format(env_id, entry.sha256[:12], previous["rate"], previous["episodes"]))
    elif previous.get("sha256") == entry.sha256:
        provenance["earlier_reports"] = [*provenance.get("earlier_reports", []),
                                         dict(previous, replaced_because=runtime_change)]
    rate = sum(successes.values()) / len(successes)
    low, high = wilson_interval(rate, len(successes))
    contiguous = seeds == list(range(seeds[0], seeds[0] + len(seeds)))
    report = {"rate": rate, "episodes": len(successes),
              "seeds": "{}-{}".format(seeds[0], seeds[-1]) if contiguous else ",".join(map(str, seeds)),
              "interval": [round(low, 3), round(high, 3)], "sha256": entry.sha256,
              "date": datetime.date.today().isoformat()}
    write_entry(weights_dir, entry._replace(provenance={**provenance, "report": report}))
    return report


def on_report_seeds(figure: Dict[str, Any]) -> bool:
    """Whether a recorded figure's seeds are report seeds (`"first-last"` or a comma list; figures of external
    checks name their seeds in words)."""
    try:
        seeds = [int(part) for part in str(figure.get("seeds", "")).replace("-", ",").split(",")]
        for seed in seeds:
            check("report", seed)
    except ValueError:
        return False
    return True
