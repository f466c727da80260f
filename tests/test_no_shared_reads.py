"""Nothing in the project reads the `shared` folder that sits beside the repository on the developers' machines.

That folder (`../shared`, `/work/shared`) holds reference material for the people working on the project; a user's
fresh clone has no such folder, so code, tests, scripts and configuration must not refer to it. (The project's own
`shared/` package, at the repository's root, is another thing and is fine.)

Static: Python files are parsed, and a path is flagged when it climbs out of the repository to a folder named
`shared`: a string such as `"../shared/..."` or `"/work/shared"`, `ROOT.parent / "shared"`, `ROOT / ".." / "shared"`,
`Path(__file__).resolve().parents[N] / "shared"` with N past the repository's root, `os.path.join(..., "..",
"shared")`. Docstrings and comments may cite it (benchmarks name the product brief they measure); other files (shell,
Makefile, YAML, Markdown...) may not mention `../shared` or `/work/shared` outside their comment lines.
"""

from __future__ import annotations

import ast
import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

FOLDERS = ("services", "shared", "tests", "deploy", "bench")
TOP_FILES = ("Makefile", "Dockerfile", "docker-compose.yml", "pyproject.toml", ".ci/run", ".importlinter")
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "artifacts", "results", "node_modules"}
THIS = Path(__file__).resolve()

# In a string: a relative path starting with ../shared, or one that climbs to it after a slash, or the absolute one.
PATH_IN_STRING = re.compile(r"(?:^|[\\/])\.\.[\\/]+shared(?:[\\/]|$)|/work/shared(?:[\\/]|$)")
# In other files: any mention of either.
MENTION = re.compile(r"\.\./shared\b|/work/shared\b")
# Names that stand for the repository's root wherever they come from (tests.conftest, bench.common, deploy scripts).
ROOT_NAMES = {"ROOT", "REPO", "REPO_ROOT", "PROJECT_ROOT", "REPOSITORY"}


def project_files() -> Iterator[Path]:
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*")):
            rel = path.relative_to(ROOT)
            if path.is_file() and not SKIP_DIRS & set(rel.parts[:-1]) and path.resolve() != THIS:
                yield path
    for name in TOP_FILES:
        if (ROOT / name).is_file():
            yield ROOT / name


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


class _Levels:
    """How far above the repository's root a path expression points: 0 is the root, 1 the folder holding it (where
    the sibling `shared` is), negative inside the repository; None when it cannot be told statically."""

    def __init__(self, tree: ast.Module, depth: int) -> None:
        self.depth = depth  # the file's parts below the root: tests/registry/x.py -> 3
        self.names: dict[str, int | None] = {}
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                self.names[node.targets[0].id] = self.of(node.value)

    def of(self, node: ast.expr) -> int | None:
        if isinstance(node, ast.Name):
            if node.id in self.names:
                return self.names[node.id]
            return 0 if node.id in ROOT_NAMES else None
        if isinstance(node, ast.Attribute):
            if node.attr == "parent":
                base = self.of(node.value)
                return None if base is None else base + 1
            return None
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "parents":
            base = self.of(node.value.value)
            index = node.slice
            if base is not None and isinstance(index, ast.Constant) and isinstance(index.value, int):
                return base + index.value + 1
            return None
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in ("resolve", "absolute", "expanduser"):
                return self.of(func.value)
            if isinstance(func, ast.Name) and func.id == "Path" and len(node.args) == 1:
                arg = node.args[0]
                if isinstance(arg, ast.Name) and arg.id == "__file__":
                    return -self.depth
                return self.of(arg)
            return None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            base = self.of(node.left)
            right = node.right
            if base is None or not (isinstance(right, ast.Constant) and isinstance(right.value, str)):
                return None
            return _climb(base, right.value)[0]
        return None


def _climb(level: int, path: str) -> tuple[int, bool]:
    """The level after appending `path`, and whether it passed through a `shared` folder outside the repository."""
    outside_shared = False
    for part in re.split(r"[\\/]+", path):
        if part in ("", "."):
            continue
        if part == "..":
            level += 1
        else:
            if part == "shared" and level >= 1:
                outside_shared = True
            level -= 1
    return level, outside_shared


def python_findings(text: str, depth: int) -> list[str]:
    tree = ast.parse(text)
    docstrings = _docstrings(tree)
    levels = _Levels(tree, depth)
    found = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if PATH_IN_STRING.search(node.value):
                found.append(f"{line}: the string {node.value[:80]!r}")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            right = node.right
            if isinstance(right, ast.Constant) and isinstance(right.value, str):
                base = levels.of(node.left)
                if base is not None and _climb(base, right.value)[1]:
                    found.append(f"{line}: {ast.unparse(node)[:100]}")
        elif isinstance(node, ast.Call):
            parts = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            if any(a == ".." and b.split("/")[0] == "shared" for a, b in itertools.pairwise(parts)):
                found.append(f"{line}: {ast.unparse(node)[:100]}")
    return found


def text_findings(text: str) -> list[str]:
    return [
        f"{n}: {line.strip()[:100]}"
        for n, line in enumerate(text.splitlines(), 1)
        if MENTION.search(line) and not line.lstrip().startswith(("#", "//"))
    ]


def findings(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return []  # not text: images, archives
    rel = path.relative_to(ROOT)
    if path.suffix == ".py":
        return python_findings(text, len(rel.parts))
    return text_findings(text)


def test_nothing_refers_to_the_shared_folder_beside_the_repository() -> None:
    files = list(project_files())
    assert len(files) > 100, "the scan found too few files: is ROOT the repository?"
    bad = {str(p.relative_to(ROOT)): f for p in files if (f := findings(p))}
    assert not bad, (
        "these refer to the `shared` folder beside the repository, which a fresh clone does not have; "
        f"bring the data into the repository (e.g. tests/.../fixtures/) or take the path as an argument: {bad}"
    )


@pytest.mark.parametrize(
    ("rel", "code"),
    [
        # the shapes the project used before (tests/registry/test_import_cahra_*.py, deploy/cahra/make_starter.py)
        ("tests/registry/t.py", 'REF = ROOT.parent / "shared" / "reference" / "cahra"'),
        ("tests/registry/t.py", 'upstream = ROOT.parent / "shared" / "reference" / "cahra" / "cahra.json"'),
        ("deploy/cahra/m.py", 'X = (ROOT / ".." / "shared" / "reference" / "cahra" / "cahra.json").resolve()'),
        # and the others the brief names
        ("tests/t.py", 'X = Path(__file__).resolve().parents[2] / "shared"'),
        ("tests/registry/t.py", 'X = Path(__file__).resolve().parents[3] / "shared" / "PRODUCT.md"'),
        ("bench/b.py", 'X = Path(__file__).parent.parent.parent / "shared"'),
        ("bench/b.py", 'HERE = Path(__file__).resolve().parent\nX = HERE.parent.parent / "shared"'),
        ("bench/b.py", 'X = Path("/work/shared/reference/cahra/cahra.json")'),
        ("bench/b.py", 'X = Path("../shared/PRODUCT.md")'),
        ("bench/b.py", 'X = f"{ROOT}/../shared/reference"'),
        ("bench/b.py", 'X = os.path.join(ROOT, "..", "shared", "INFRA.md")'),
        ("bench/b.py", 'X = ROOT / "../shared/INFRA.md"'),
    ],
)
def test_the_former_and_other_shapes_are_caught(rel: str, code: str) -> None:
    assert python_findings(code, len(Path(rel).parts)), code


@pytest.mark.parametrize(
    ("rel", "code"),
    [
        ("tests/t.py", 'X = ROOT / "shared" / "topics.py"'),  # the project's own package
        ("tests/t.py", 'X = Path(__file__).resolve().parents[1] / "shared"'),
        ("tests/registry/t.py", 'X = Path(__file__).resolve().parents[2] / "shared"'),
        ("tests/registry/t.py", 'X = Path(__file__).parent / "fixtures" / "cahra.json"'),
        ("bench/b.py", '"""Benchmarks of the promises in ../shared/PRODUCT.md."""'),  # a docstring may cite it
        ("bench/b.py", 'PROMISE = "answers within 5 ms (p99) (../shared/PRODUCT.md)"'),  # a citation, not a path
        ("bench/b.py", "from shared.topics import TOPICS"),
    ],
)
def test_the_project_package_and_citations_are_not_caught(rel: str, code: str) -> None:
    assert not python_findings(code, len(Path(rel).parts)), code


def test_other_files_are_read_line_by_line() -> None:
    assert text_findings('cp ../shared/reference/cahra/cahra.json var/\nREF="$ROOT/../shared"\n') != []
    assert len(text_findings("volumes:\n  - /work/shared:/ref:ro\n")) == 1
    assert text_findings("# the brief is in ../shared/PRODUCT.md\nshared_buffers = 128MB\n") == []
