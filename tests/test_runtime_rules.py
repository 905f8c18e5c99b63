"""The shipped runtime (agent/, user_solution.py) stays Python 3.8 code importing only what the image has."""
import ast
import sys
from pathlib import Path
from typing import Iterator, List

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_FILES = sorted(ROOT.joinpath("agent").rglob("*.py")) + [ROOT / "user_solution.py"]
THIRD_PARTY = {"numpy", "onnxruntime", "mani_skill2.evaluation.solution"}
BUILTIN_GENERICS = {"list", "dict", "tuple", "set", "frozenset", "type"}  # subscriptable only from 3.9


def imported_modules(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module or ""


def allowed(module: str) -> bool:
    top = module.split(".")[0]
    return top == "agent" or top in sys.stdlib_module_names or module in THIRD_PARTY or top in THIRD_PARTY


def newer_than_38(tree: ast.AST) -> List[str]:
    """Constructs that parse under feature_version=(3, 8) but fail at run time there."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in BUILTIN_GENERICS:
            found.append("{}[...] at line {}".format(node.value.id, node.lineno))
        annotations = [getattr(node, "annotation", None), getattr(node, "returns", None)]
        for annotation in filter(None, annotations):
            if any(isinstance(part, ast.BinOp) and isinstance(part.op, ast.BitOr) for part in ast.walk(annotation)):
                found.append("X | Y annotation at line {}".format(node.lineno))
    return found


@pytest.mark.parametrize("path", RUNTIME_FILES, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_runtime_file_is_python38_with_allowed_imports(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path), feature_version=(3, 8))
    forbidden = [module for module in imported_modules(tree) if not allowed(module)]
    assert not forbidden, "{} imports {}".format(path.name, forbidden)
    assert not newer_than_38(tree)


def test_the_rules_catch_violations() -> None:
    tree = ast.parse("import torch\nfrom training.common.networks import X\nimport gymnasium\n"
                     "def f(a: list[int]) -> int | None: ...\n")
    assert [module for module in imported_modules(tree) if not allowed(module)] == [
        "torch", "training.common.networks", "gymnasium"]
    assert len(newer_than_38(tree)) == 2
    with pytest.raises(SyntaxError):
        ast.parse("match x:\n    case 1: pass\n", feature_version=(3, 8))
