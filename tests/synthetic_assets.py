"""A tiny synthetic asset set in the on-disk layout ManiSkill2 0.5.x reads for its asset tasks, for tests that must
run PickSingleEGAD-v0 / PickSingleYCB-v0 without the downloaded assets.

Layout under ASSET_DIR (mani_skill2/envs/pick_and_place/pick_single.py):
- PickSingleEGAD-v0: `mani_skill2_egad/info_pick_train_v0.json` ({model_id: {"bbox": {"min", "max"}, "scales"}}),
  `mani_skill2_egad/egad_train_set/{model_id}.obj` (visual) and `egad_train_set_coacd/{model_id}.obj` (collision);
  ids holding "_" are in the train split (`build_actor_egad`).
- PickSingleYCB-v0: `mani_skill2_ycb/info_pick_v0.json` (the same fields), `mani_skill2_ycb/models/{model_id}/
  collision.obj` and `textured.obj`.

ManiSkill2 reads `MS2_ASSET_DIR` once, when `mani_skill2` is first imported (`mani_skill2.ASSET_DIR`, formatted into
each env's asset root when the env is made): a process must set it before that import. `use_assets` sets it for
processes started later (env workers, CLI subprocesses) and also patches `mani_skill2.ASSET_DIR` in this process.
"""
import json
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

# model id -> half extents (m) of a box; small enough for the Panda gripper (8 cm opening)
EGAD_MODELS: Dict[str, Tuple[float, float, float]] = {
    "A00_0": (0.02, 0.02, 0.02), "B01_1": (0.015, 0.025, 0.02), "C02_2": (0.025, 0.015, 0.015)}
YCB_MODELS: Dict[str, Tuple[float, float, float]] = {"900_synthetic_box": (0.02, 0.03, 0.025)}


def box_obj(half: Tuple[float, float, float]) -> str:
    """A closed box mesh centred at the origin as Wavefront OBJ text (8 vertices, 12 outward triangles)."""
    signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float)
    vertices = signs * np.asarray(half)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    lines = ["v {:.6f} {:.6f} {:.6f}".format(*vertex) for vertex in vertices]
    for a, b, c, d in quads:  # OBJ indices are 1-based
        lines += ["f {} {} {}".format(a + 1, b + 1, c + 1), "f {} {} {}".format(a + 1, c + 1, d + 1)]
    return "\n".join(lines) + "\n"


def model_info(models: Dict[str, Tuple[float, float, float]]) -> Dict[str, Dict]:
    return {model_id: {"bbox": {"min": [-h for h in half], "max": list(half)}, "scales": [1.0]}
            for model_id, half in models.items()}


def write_egad(asset_dir: Path) -> List[str]:
    """PickSingleEGAD-v0's assets under `asset_dir`; returns the model ids."""
    root = asset_dir / "mani_skill2_egad"
    for folder in ("egad_train_set", "egad_train_set_coacd"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for model_id, half in EGAD_MODELS.items():
            (root / folder / "{}.obj".format(model_id)).write_text(box_obj(half))
    (root / "info_pick_train_v0.json").write_text(json.dumps(model_info(EGAD_MODELS)))
    return sorted(EGAD_MODELS)


def write_ycb(asset_dir: Path) -> List[str]:
    """PickSingleYCB-v0's assets under `asset_dir`; returns the model ids."""
    root = asset_dir / "mani_skill2_ycb"
    for model_id, half in YCB_MODELS.items():
        folder = root / "models" / model_id
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("collision.obj", "textured.obj"):
            (folder / name).write_text(box_obj(half))
    (root / "info_pick_v0.json").write_text(json.dumps(model_info(YCB_MODELS)))
    return sorted(YCB_MODELS)


def use_assets(asset_dir: Path, monkeypatch) -> None:
    """Make ManiSkill2 read its assets from `asset_dir`, here and in processes started from now on (see above)."""
    import mani_skill2

    monkeypatch.setenv("MS2_ASSET_DIR", str(asset_dir))
    monkeypatch.setattr(mani_skill2, "ASSET_DIR", Path(asset_dir))
