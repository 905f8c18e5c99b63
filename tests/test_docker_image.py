"""The Docker image's contents, checked without Docker.

Stages exactly what the Dockerfile's COPY lines copy, into a venv that mirrors the image: Python 3.8
(the base image's Miniconda), the Dockerfile's pip pins, and the base image's simulator
(mani-skill2 0.5.0, which pins sapien 2.2.2), and no torch. Then runs the official evaluator the way
the image does (WORKDIR, PYTHONPATH) on an untrained policy written into the *staged* weights.
The venv is cached in build/docker-check-venv/, keyed by interpreter and pins (~1 GB, ~1 min to build).
"""
import glob
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Dict, List, NamedTuple, Tuple

import pytest

from agent.vulkan_fallback import fallback_variables
from test_agent_evaluator import run_official_evaluator, ship_untrained

ROOT = Path(__file__).resolve().parents[1]
IMAGE_PYTHON = "3.8"  # haosulab/mani-skill2:latest (REFERENCE section 2)
IMAGE_SIMULATOR = ["mani-skill2==0.5.0", "sapien==2.2.2", "gymnasium==0.29.1", "setuptools<81"]
VENV_CACHE = ROOT / "build" / "docker-check-venv"


class Dockerfile(NamedTuple):
    base: str
    pins: List[str]  # requirements of the RUN ... pip install lines
    copies: List[Tuple[str, str]]  # (source in the build context, absolute destination; trailing / = directory)
    workdir: str
    env: Dict[str, str]


def instructions(text: str) -> List[Tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = "\n".join(lines).replace("\\\n", " ")
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip()) for line in joined.splitlines()
            if line.strip()]


def parse_dockerfile(path: Path) -> Dockerfile:
    base, workdir, pins, copies, env = "", "/", [], [], {}
    for instruction, arguments in instructions(path.read_text()):
        if instruction == "FROM":
            base = arguments
        elif instruction == "WORKDIR":
            workdir = str(PurePosixPath(workdir, arguments))
        elif instruction == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(arguments))
        elif instruction == "RUN":
            words = shlex.split(arguments)
            for start in [i + 2 for i in range(len(words) - 1) if words[i:i + 2] == ["pip", "install"]]:
                rest = words[start:words.index("&&", start)] if "&&" in words[start:] else words[start:]
                pins += [word for word in rest if not word.startswith("-")]
        elif instruction == "COPY":
            *sources, destination = shlex.split(arguments)
            assert not any(source.startswith("--") for source in sources), "COPY flags are not supported here"
            target = str(PurePosixPath(workdir, destination)) + "/" * destination.endswith("/")
            copies += [(source, target) for source in sources]
        else:
            raise AssertionError("unexpected Dockerfile instruction " + instruction)
    return Dockerfile(base, pins, copies, workdir, env)


def in_root(root: Path, image_path: str) -> Path:
    return root / image_path.lstrip("/")


def stage(dockerfile: Dockerfile, root: Path) -> None:
    """Copy what the Dockerfile's COPY lines copy from the repository into `root` (the image's /).

    As in Docker: a directory's contents go into the destination; a file goes into a destination
    ending with / and becomes any other destination.
    """
    for source, destination in dockerfile.copies:
        target = in_root(root, destination)
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            target = target / Path(source).name if destination.endswith("/") else target
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / source, target)


def image_python() -> str:
    """A Python of the image's version (pyenv or the system), else this interpreter."""
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = sorted(glob.glob(os.path.join(pyenv, "versions", IMAGE_PYTHON + ".*", "bin", "python3")))
    candidates.append(shutil.which("python" + IMAGE_PYTHON) or "")
    for candidate in filter(None, candidates):
        version = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True)
        if version.stdout.strip() == IMAGE_PYTHON:
            return candidate
    return sys.executable


def check_venv(requirements: List[str]) -> Path:
    """A cached venv with exactly `requirements` (and their dependencies) installed; its python."""
    python = image_python()
    key = hashlib.sha256(" ".join([python] + sorted(requirements)).encode()).hexdigest()[:12]
    venv = VENV_CACHE / key
    if not (venv / "complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *requirements],
                       check=True, timeout=1200)
        (venv / "complete").write_text("\n".join(requirements) + "\n")
    return venv / "bin" / "python"


def test_dockerfile_copies_only_the_runtime_and_ignores_the_rest() -> None:
    dockerfile = parse_dockerfile(ROOT / "Dockerfile")
    assert dockerfile.base == "haosulab/mani-skill2:latest"
    assert sorted(source.rstrip("/") for source, _ in dockerfile.copies) == ["agent", "user_solution.py", "weights"]
    assert all("==" in pin for pin in dockerfile.pins) and any(pin.startswith("onnxruntime==") for pin in dockerfile.pins)
    assert dockerfile.env["PYTHONPATH"] == dockerfile.workdir
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*" and {"!agent/", "!weights/", "!user_solution.py"} <= set(ignore)
    assert "weights/in-training/" in ignore  # students still in training are committed, not shipped


@pytest.mark.sim
def test_official_evaluator_runs_in_the_staged_image(tmp_path: Path) -> None:
    dockerfile = parse_dockerfile(ROOT / "Dockerfile")
    root = tmp_path / "image"
    stage(dockerfile, root)
    workdir = in_root(root, dockerfile.workdir)
    assert sorted(path.name for path in workdir.iterdir()) == ["agent", "user_solution.py", "weights"]
    ship_untrained(workdir / "weights")

    python = check_venv(dockerfile.pins + IMAGE_SIMULATOR)
    no_torch = subprocess.run([str(python), "-c", "import importlib.util as u; print(u.find_spec('torch'))"],
                              capture_output=True, text=True, check=True)
    assert no_torch.stdout.strip() == "None"

    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(tmp_path)),
           "PYTHONPATH": str(in_root(root, dockerfile.env["PYTHONPATH"]))}
    env.update(fallback_variables() or {})  # the image has a real Vulkan driver; this machine may need lavapipe
    metrics = run_official_evaluator(str(python), workdir, tmp_path / "out", env)
    assert 0.0 <= metrics["success"] <= 1.0
