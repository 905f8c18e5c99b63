"""The package layout: every module of agent/ and training/ imports, no import cycle among them (function-level
imports included), agent/ never imports training/, every package directory has an __init__.py, and a wheel built
from the repository holds every package."""
import ast
import importlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agent", "training")


def package_dirs() -> List[Path]:
    """Every directory under agent/ and training/ holding Python files (caches excluded)."""
    return sorted({path.parent for package in PACKAGES for path in (ROOT / package).rglob("*.py")
                   if "__pycache__" not in path.parts})


def project_modules() -> Dict[str, Path]:
    """Module name -> file, for every module of agent/ and training/ (a package as its __init__.py)."""
    modules = {}
    for directory in package_dirs():
        for path in directory.glob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


MODULES = project_modules()


def resolved(name: str, package: str, level: int) -> str:
    """The absolute module name of a (possibly relative) import in `package`."""
    if not level:
        return name
    base = package.split(".")[:len(package.split(".")) - level + 1]
    return ".".join(base + ([name] if name else []))


def imports_of(module: str, path: Path) -> Set[str]:
    """The project modules `module` imports anywhere in its file, with the packages that importing them
    initialises (except its own packages, which are initialised before it)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = resolved(node.module or "", package, node.level)
            found.add(base)
            found.update("{}.{}".format(base, alias.name) for alias in node.names)
    own = {".".join(module.split(".")[:k]) for k in range(1, module.count(".") + 1)}
    edges = set()
    for name in found:
        parts = name.split(".")
        for k in range(1, len(parts) + 1):
            prefix = ".".join(parts[:k])
            if prefix in MODULES and prefix not in own and prefix != module:
                edges.add(prefix)
    return edges


def import_graph() -> Dict[str, Set[str]]:
    return {module: imports_of(module, path) for module, path in MODULES.items()}


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One cycle of `graph` as a path (first node repeated at the end), or None."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(node: str) -> Optional[List[str]]:
        state[node] = 1
        path.append(node)
        for successor in sorted(graph[node]):
            if state.get(successor) == 1:
                return path[path.index(successor):] + [successor]
            if successor not in state:
                cycle = visit(successor)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


@pytest.mark.parametrize("module", sorted(name for name in MODULES if not name.endswith("__main__")))
def test_every_module_imports(module: str) -> None:
    importlib.import_module(module)


def test_no_import_cycle_among_project_modules() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_search_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_agent_imports_nothing_from_training() -> None:
    graph = import_graph()
    offending = {module: sorted(name for name in graph[module] if name.split(".")[0] == "training")
                 for module in graph if module.split(".")[0] == "agent"}
    assert not {module: names for module, names in offending.items() if names}


def test_every_package_directory_has_an_init() -> None:
    assert [d.relative_to(ROOT).as_posix() for d in package_dirs() if not (d / "__init__.py").exists()] == []


def test_moved_modules_still_find_the_repository() -> None:
    from agent.manifest import DEFAULT_WEIGHTS_DIR
    from agent.vulkan_fallback import ENV_FILE
    from training.common.fast_render import CACHE_DIR

    assert (DEFAULT_WEIGHTS_DIR, ENV_FILE.parents[1], CACHE_DIR.parent) == (ROOT / "weights", ROOT / "build",
                                                                          ROOT / "build")


@pytest.mark.slow
def test_a_wheel_holds_every_package(tmp_path: Path) -> None:
    """`pip wheel` of a copy of the sources (the build writes build/ and *.egg-info next to them)."""
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "build")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "user_solution.py"):
        shutil.copy(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "-w", str(wheels), str(source)], check=True, timeout=600)
    (wheel,) = wheels.glob("ms2agent-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = [d.relative_to(ROOT).as_posix() + "/__init__.py" for d in package_dirs()]
    assert [name for name in expected if name not in names] == []
    assert "user_solution.py" in names
