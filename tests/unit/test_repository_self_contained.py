"""The repository stands on its own: no code under tests/, services/, testkit/, bench/ or infra/
builds a path out of the repository (to its parent directory, to ``../shared`` beside it), and
the peer test files the XML conformance test replays are vendored in tests/data/ece568 with their
sources."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from services.common.config import ROOT
from tests.e2e import test_gateway_xml_conformance as conformance

SCANNED = ("tests", "services", "testkit", "bench", "infra")
# names the code base gives to the repository root (services.common.config.ROOT, infra/local.py)
ROOT_NAMES = {"ROOT", "REPO", "REPO_ROOT", "REPOSITORY", "PROJECT_ROOT"}
FILE_HOPS = {"resolve", "absolute", "expanduser"}  # Path(__file__).resolve() is still the file
VENDORED = ROOT / "tests" / "data" / "ece568"
SOURCES = VENDORED / "SOURCES.md"


def _segments(text: str) -> list[str]:
    return re.split(r"[/\\]", text)


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes: prose, not paths."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def _hops_from_file(node: ast.expr) -> int | None:
    """How many directories up from this source file the expression goes, if it is a chain of
    .parent / .parents[k] / os.path.dirname(...) over Path(__file__) or __file__; else None."""
    hops = 0
    while True:
        if isinstance(node, ast.Name) and node.id == "__file__":
            return hops
        if isinstance(node, ast.Attribute) and node.attr == "parent":
            hops, node = hops + 1, node.value
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "parents"
        ):
            index = node.slice
            if not (isinstance(index, ast.Constant) and isinstance(index.value, int)):
                return None
            hops, node = hops + index.value + 1, node.value.value
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in FILE_HOPS
            and not node.args
        ):
            node = node.func.value
        elif isinstance(node, ast.Call) and _called(node) in {"Path", "PurePath"} and node.args:
            node = node.args[0]
        elif isinstance(node, ast.Call) and _called(node) == "dirname" and node.args:
            hops, node = hops + 1, node.args[0]
        elif isinstance(node, ast.Call) and _called(node) in {"abspath", "realpath"} and node.args:
            node = node.args[0]
        else:
            return None


def _called(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def escapes(source: str, relative: Path) -> list[str]:
    """Every place in ``source`` (the file at ``relative`` under the repository root) that
    builds a path outside the repository: a ``..`` or ``shared`` path segment in a string,
    os.pardir, the repository root's parent, or more ``.parent`` hops from ``__file__`` than the
    file is deep."""
    tree = ast.parse(source)
    depth = len(relative.parts)  # this many hops from the file reach the repository root
    prose = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        where = f"{relative}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in prose:
                continue
            parts = _segments(node.value)
            if ".." in parts or (len(parts) > 1 and "shared" in parts):
                found.append(f"{where}: path string {node.value!r}")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            for side in (node.left, node.right):
                if isinstance(side, ast.Constant) and side.value in ("shared", ".."):
                    found.append(f"{where}: path segment {side.value!r}")
        elif isinstance(node, ast.Call) and _called(node) in {"join", "joinpath", "Path"}:
            for arg in node.args:
                if isinstance(arg, ast.Constant) and arg.value in ("shared", ".."):
                    found.append(f"{where}: path segment {arg.value!r} in {_called(node)}()")
        elif isinstance(node, ast.Attribute) and node.attr == "pardir":
            found.append(f"{where}: os.pardir")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in ("parent", "parents")
            and isinstance(node.value, ast.Name)
            and node.value.id in ROOT_NAMES
        ):
            found.append(f"{where}: {node.value.id}.{node.attr} (the repository's parent)")
        if isinstance(node, ast.expr):
            hops = _hops_from_file(node)
            if hops is not None and hops > depth:
                found.append(f"{where}: {hops} directories up from a file {depth} deep")
    return found


def _sources() -> list[Path]:
    return sorted(p for top in SCANNED for p in (ROOT / top).rglob("*.py"))


# -- the check itself ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "source",
    [
        'PEERS = ROOT.parent / "shared" / "peers" / "ece568"',
        "up = REPO_ROOT.parent",
        'p = Path(__file__).resolve().parents[3] / "x"',  # tests/unit/x.py is 3 deep
        "p = Path(__file__).parent.parent.parent.parent",
        "p = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))",
        'p = Path("..") / "peers"',
        'p = here / "shared" / "peers"',
        'p = os.path.join(base, "..", "x")',
        'p = os.path.join(base, "shared", "x")',
        "p = HERE.joinpath('shared')",
        'open("../../shared/peers/ece568/SOURCES.md")',
        'open(r"..\\\\shared\\\\peers")',
        "p = os.path.join(here, os.pardir)",
    ],
)
def test_the_check_finds_paths_out_of_the_repository(source):
    assert escapes(source, Path("tests/unit/x.py")), source


@pytest.mark.parametrize(
    "source",
    [
        'p = ROOT / "tests" / "data" / "ece568"',
        "ROOT = Path(__file__).resolve().parents[2]",  # services/common/x.py: the repository root
        "p = Path(__file__).resolve().parent / 'migrations'",
        "p = path.parent.mkdir(parents=True)",  # some other path's parent
        '"""Code shared by two or more services; see ../docs."""',  # a docstring is prose
        'msg = "a shared system"',
        "x = 'shared'",  # a word, not used as a path segment
    ],
)
def test_the_check_passes_paths_inside_the_repository(source):
    assert escapes(source, Path("services/common/x.py")) == [], source


# -- the repository --------------------------------------------------------------------------
def test_no_source_builds_a_path_outside_the_repository():
    sources = _sources()
    assert len(sources) > 50  # the scan did find the code base
    me = Path(__file__).resolve()
    found = []
    for path in sources:
        if path.resolve() == me:  # its own examples above are meant to be found
            continue
        found += escapes(path.read_text(), path.relative_to(ROOT))
    assert found == []


def test_the_conformance_tests_peer_files_are_vendored_in_the_repository():
    files = conformance.peer_files()
    assert conformance.PEERS == VENDORED
    assert len(files) > 100
    missing = [str(p) for p in files if not p.is_file()]
    assert missing == []
    assert all(p.resolve().is_relative_to(VENDORED.resolve()) for p in files)


def test_exactly_those_files_are_vendored_each_with_its_source():
    wanted = {p.relative_to(VENDORED).as_posix() for p in conformance.peer_files()}
    present = {p.relative_to(VENDORED).as_posix() for p in VENDORED.rglob("*") if p.is_file()} - {
        "SOURCES.md"
    }
    assert present == wanted
    text = SOURCES.read_text()
    assert "licen" in text.lower()
    rows = re.findall(
        r"^\| (\S+) \| ([\w.-]+/[\w.-]+) \| (\S+) \| ([0-9a-f]{40}) \|$", text, re.MULTILINE
    )
    listed = {local: (repo, path) for local, repo, path, _ in rows}
    assert set(listed) == wanted
    for local, (repo, path) in listed.items():
        owner, name = repo.split("/")
        assert local == f"{owner}+{name}/{path}"  # the layout keeps the original path
