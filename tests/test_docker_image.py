"""The Docker image's contents and runtime, checked without Docker.

`stage` puts into a directory (the image's `/`) exactly the files the Dockerfile's COPY lines copy out of the
build context that `.dockerignore` leaves (Docker's matching: `read_dockerignore`, `ignored`). `check_venv`
builds a venv that mirrors the image's Python environment: Python 3.8, the base image's (pyenv's; without it
the test skips, naming how to install it, and never runs on another Python), the Dockerfile's pip pins and the
base image's simulator (mani-skill2 0.5.0 with sapien 2.2.2, gymnasium 0.29.1), and no torch; it is cached in
build/docker-check-venv/ (~1 GB). The official evaluator then plays one episode of every shipped policy there,
from the staged WORKDIR with the image's PYTHONPATH and the shipped manifest as staged; a looking policy's
episode lasts past its look step.
"""
import hashlib
import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Dict, List, NamedTuple, Optional, Pattern, Tuple

import pytest

from agent.manifest import file_sha256, read_manifest
from agent.vulkan_fallback import fallback_variables

ROOT = Path(__file__).resolve().parents[1]
IMAGE_PYTHON = "3.8"  # haosulab/mani-skill2:latest's Miniconda Python
IMAGE_SIMULATOR = ["mani-skill2==0.5.0", "sapien==2.2.2", "gymnasium==0.29.1", "setuptools<81"]
VENV_CACHE = ROOT / "build" / "docker-check-venv"
INSTALL_PYTHON = ("install it with pyenv (https://github.com/pyenv/pyenv#installation): `pyenv install 3.8.18`; "
                  "this check never runs on another Python")
SEED = 1_600_000  # a selection seed set aside for this test (tests/test_shipped_policies.py plays 1,500,000+)
SHIPPED = read_manifest(ROOT / "weights")


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


class IgnorePattern(NamedTuple):
    text: str  # as cleaned, without its `!`
    regex: Pattern
    reinclude: bool  # a `!` line: what it matches is back in the context


def pattern_regex(pattern: str) -> str:
    """A cleaned .dockerignore pattern as Docker translates it into a regular expression: `**` (with its `/`)
    is any number of directories, none included, and a final `**` anything; `*` is any run of characters but
    `/`, `?` one such character; `[...]` a character class; `\\` escapes the next character."""
    regex, i = "^", 0
    while i < len(pattern):
        char = pattern[i]
        i += 1
        if char == "*" and pattern[i:i + 1] == "*":
            i += 1 + (pattern[i + 1:i + 2] == "/")
            regex += ".*" if i >= len(pattern) else "(.*/)?"
        elif char == "*":
            regex += "[^/]*"
        elif char == "?":
            regex += "[^/]"
        elif char == "\\":
            regex += re.escape(pattern[i]) if i < len(pattern) else "\\\\"
            i += 1
        elif char in "[]":
            regex += char
        else:
            regex += re.escape(char)
    return regex + "$"


def read_dockerignore(text: str) -> List[IgnorePattern]:
    """The patterns of a .dockerignore, as Docker reads them: lines starting with `#` are comments, the rest are
    stripped, empty ones skipped; a leading `!` re-includes; a pattern is cleaned like a path (no `.` or
    repeated `/`, no trailing `/`) and relative to the context root (a leading `/` is dropped)."""
    patterns = []
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        pattern = line.strip()
        reinclude = pattern.startswith("!")
        pattern = pattern[1:].strip() if reinclude else pattern
        if not pattern:
            raise ValueError("illegal exclusion pattern: {!r}".format(line))
        pattern = re.sub("^/+", "/", posixpath.normpath(pattern))
        pattern = pattern[1:] if len(pattern) > 1 and pattern.startswith("/") else pattern
        patterns.append(IgnorePattern(pattern, re.compile(pattern_regex(pattern)), reinclude))
    return patterns


def ignored(path: str, patterns: List[IgnorePattern]) -> bool:
    """Whether Docker leaves `path` (relative to the context root, `/`-separated) out of the build context:
    patterns apply in order, each matching the path itself or any of its parent directories, and the last
    one that matches decides (a `!` pattern re-includes)."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for pattern in patterns:
        if pattern.reinclude == excluded and any(pattern.regex.match(prefix) for prefix in prefixes):
            excluded = not pattern.reinclude
    return excluded


def stage(dockerfile: Dockerfile, root: Path, context: Path = ROOT) -> None:
    """Copy into `root` (the image's `/`) what the Dockerfile's COPY lines copy from `context`, without what
    its `.dockerignore` excludes. As in Docker: a directory's contents go into the destination; a file goes
    into a destination ending with / and becomes any other destination; an excluded source is an error."""
    ignore_file = context / ".dockerignore"
    patterns = read_dockerignore(ignore_file.read_text()) if ignore_file.exists() else []
    for source, destination in dockerfile.copies:
        relative = posixpath.normpath(source)
        if ignored(relative, patterns) or not (context / relative).exists():
            raise AssertionError("COPY {}: not in the build context (.dockerignore excludes it or it does not "
                                 "exist); docker build would fail".format(source))
        target = root / destination.lstrip("/")
        if (context / relative).is_file():
            target = target / Path(relative).name if destination.endswith("/") else target
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(context / relative, target)
            continue
        for directory, _, files in os.walk(context / relative):
            inside = Path(directory).relative_to(context / relative)
            if not ignored((Path(relative) / inside).as_posix(), patterns):
                (target / inside).mkdir(parents=True, exist_ok=True)
            for name in files:
                if not ignored((Path(relative) / inside / name).as_posix(), patterns):
                    (target / inside).mkdir(parents=True, exist_ok=True)
                    shutil.copy2(Path(directory) / name, target / inside / name)


def staged_files(root: Path) -> List[str]:
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())


def image_python() -> Optional[str]:
    """pyenv's Python of the image's version ($PYENV_ROOT, ~/.pyenv or `pyenv root`), or None."""
    roots = [os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv")]
    if shutil.which("pyenv"):
        roots.append(subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip())
    candidates = [str(path) for root in filter(None, roots)
                  for path in sorted(Path(root).glob("versions/{}.*/bin/python{}".format(IMAGE_PYTHON, IMAGE_PYTHON)))]
    for candidate in candidates:
        version = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True)
        if version.stdout.strip() == IMAGE_PYTHON:
            return candidate
    return None


def check_venv(python: str, requirements: List[str]) -> Path:
    """A cached venv of `python` with exactly `requirements` (and their dependencies) installed; its python."""
    version = subprocess.run([python, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    key = hashlib.sha256(" ".join([os.path.realpath(python), version] + sorted(requirements)).encode()).hexdigest()
    venv = VENV_CACHE / key[:12]
    if not (venv / "complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *requirements],
                       check=True, timeout=1800)
        (venv / "complete").write_text("\n".join(requirements) + "\n")
    return venv / "bin" / "python"


def test_dockerfile_copies_only_the_runtime_and_ignores_the_rest() -> None:
    dockerfile = parse_dockerfile(ROOT / "Dockerfile")
    assert dockerfile.base == "haosulab/mani-skill2:latest"
    assert sorted(source.rstrip("/") for source, _ in dockerfile.copies) == ["agent", "user_solution.py", "weights"]
    assert all("==" in pin for pin in dockerfile.pins) and any(pin.startswith("onnxruntime==") for pin in dockerfile.pins)
    assert dockerfile.env["PYTHONPATH"] == dockerfile.workdir


def test_dockerignore_matching_follows_docker() -> None:
    patterns = read_dockerignore("# comment\n *\n!user_solution.py\n!agent/\n!/weights/\n**/__pycache__\n"
                                 "**/*.pyc\nweights/in-training/\n\n!weights/in-training/keep.onnx\n")
    assert [(p.text, p.reinclude) for p in patterns] == [
        ("*", False), ("user_solution.py", True), ("agent", True), ("weights", True), ("**/__pycache__", False),
        ("**/*.pyc", False), ("weights/in-training", False), ("weights/in-training/keep.onnx", True)]
    kept = ["user_solution.py", "agent", "agent/policy.py", "agent/insertion/memory.py", "weights/manifest.json",
            "weights/in-training/keep.onnx"]
    left_out = ["README.md", "training/cli.py", "tests", "agent/__pycache__", "agent/__pycache__/policy.cpython-38.pyc",
                "agent/insertion/__pycache__/memory.cpython-38.pyc", "agent/stale.pyc", "weights/in-training",
                "weights/in-training/manifest.json", "weights/in-training/sub/x.onnx", "user_solution.py.orig"]
    assert [path for path in kept if ignored(path, patterns)] == []
    assert [path for path in left_out if not ignored(path, patterns)] == []
    assert pattern_regex("a.b$c?[xy]/**/d\\*") == r"^a\.b\$c[^/][xy]/(.*/)?d\*$"
    assert pattern_regex("logs/**") == "^logs/.*$" and pattern_regex("**") == "^.*$"
    one_level = read_dockerignore("a/*/c.txt")
    assert ignored("a/b/c.txt", one_level) and not ignored("a/b/x/c.txt", one_level)
    markdown = read_dockerignore("**/*.md\n!x/**/keep.md")
    assert ignored("x/y/z.md", markdown) and ignored("README.md", markdown) and not ignored("x/y/keep.md", markdown)
    with pytest.raises(ValueError, match="illegal exclusion"):
        read_dockerignore("!\n")


def test_stage_copies_what_the_dockerfile_and_dockerignore_let_in(tmp_path: Path) -> None:
    context = tmp_path / "context"
    for path in ["user_solution.py", "README.md", "agent/a.py", "agent/__pycache__/a.cpython-38.pyc", "agent/sub/b.py",
                 "weights/manifest.json", "weights/in-training/manifest.json", "training/t.py"]:
        (context / path).parent.mkdir(parents=True, exist_ok=True)
        (context / path).write_text(path)
    (context / ".dockerignore").write_text((ROOT / ".dockerignore").read_text())
    dockerfile = Dockerfile("base", [], [("user_solution.py", "/app/"), ("agent/", "/app/agent/"),
                                         ("weights/", "/app/weights/")], "/app", {})
    stage(dockerfile, tmp_path / "image", context)
    assert staged_files(tmp_path / "image") == ["app/agent/a.py", "app/agent/sub/b.py", "app/user_solution.py",
                                                "app/weights/manifest.json"]
    assert not (tmp_path / "image" / "app" / "weights" / "in-training").exists()
    with pytest.raises(AssertionError, match="COPY training/"):
        stage(dockerfile._replace(copies=[("training/", "/app/training/")]), tmp_path / "other", context)


def test_the_staged_image_ships_the_manifest_and_its_files_untouched(tmp_path: Path) -> None:
    dockerfile = parse_dockerfile(ROOT / "Dockerfile")
    stage(dockerfile, tmp_path)
    workdir = tmp_path / dockerfile.workdir.lstrip("/")
    assert sorted(path.name for path in workdir.iterdir()) == ["agent", "user_solution.py", "weights"]
    files = staged_files(workdir)
    assert not [path for path in files if "__pycache__" in path or path.endswith(".pyc") or "in-training" in path]
    assert (workdir / "weights" / "manifest.json").read_bytes() == (ROOT / "weights" / "manifest.json").read_bytes()
    for env_id, entry in read_manifest(workdir / "weights").items():
        assert file_sha256(entry.path) == entry.sha256, env_id
        if entry.slot_reader is not None:
            assert file_sha256(entry.slot_reader.path) == entry.slot_reader.sha256, env_id
    tracked = subprocess.run(["git", "ls-files", "agent", "user_solution.py"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    assert set(tracked) <= set(files)


class StagedImage(NamedTuple):
    python: Path  # the venv's
    workdir: Path
    env: Dict[str, str]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> StagedImage:
    """The staged image (untouched shipped weights) and its venv."""
    python = image_python()
    if python is None:
        pytest.skip("No Python {} (the Docker image's) found under pyenv: {}.".format(IMAGE_PYTHON, INSTALL_PYTHON))
    dockerfile = parse_dockerfile(ROOT / "Dockerfile")
    root = tmp_path_factory.mktemp("image")
    stage(dockerfile, root)
    venv_python = check_venv(python, dockerfile.pins + IMAGE_SIMULATOR)
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(root)),
           "PYTHONPATH": str(root / dockerfile.env["PYTHONPATH"].lstrip("/"))}
    env.update(fallback_variables() or {})  # the image has a real Vulkan driver; this machine may need lavapipe
    return StagedImage(venv_python, root / dockerfile.workdir.lstrip("/"), env)


@pytest.mark.sim
def test_the_venv_is_the_images_python_with_the_dockerfiles_pins(image: StagedImage) -> None:
    pins = parse_dockerfile(ROOT / "Dockerfile").pins + [pin for pin in IMAGE_SIMULATOR if "==" in pin]
    script = ("import sys, json, importlib.util as u, importlib.metadata as m; print(json.dumps(["
              "'%d.%d' % sys.version_info[:2], u.find_spec('torch') is None, {n: m.version(n) for n in sys.argv[1:]}]))")
    names = [pin.split("==")[0] for pin in pins]
    result = subprocess.run([str(image.python), "-c", script, *names], capture_output=True, text=True, check=True)
    version, no_torch, installed = json.loads(result.stdout)
    assert version == IMAGE_PYTHON and no_torch
    assert ["{}=={}".format(name, installed[name]) for name in names] == pins


@pytest.mark.sim
@pytest.mark.parametrize("env_id", sorted(SHIPPED))
def test_every_shipped_policy_plays_an_episode_under_the_official_evaluator_in_the_image(
        image: StagedImage, env_id: str, tmp_path: Path) -> None:
    manifest = image.workdir / "weights" / "manifest.json"
    assert manifest.read_bytes() == (ROOT / "weights" / "manifest.json").read_bytes()
    config = {"env_info": {"env_id": env_id}, "episodes": [{"episode_id": 0, "reset_kwargs": {"seed": SEED}}]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    result = subprocess.run([str(image.python), "-m", "mani_skill2.evaluation.run_evaluation", "-e", env_id,
                             "-o", str(out), "--config-file", str(tmp_path / "config.json")],
                            cwd=image.workdir, env=image.env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert not (out / "error.log").exists(), (out / "error.log").read_text()
    (episode,) = json.loads((out / "episode_results.json").read_text()).values()
    slot_reader = SHIPPED[env_id].slot_reader
    if slot_reader is not None:  # the policy read its slot and acted on the reading
        assert episode["elapsed_steps"] > slot_reader.look_step, episode
    assert manifest.read_bytes() == (ROOT / "weights" / "manifest.json").read_bytes()
