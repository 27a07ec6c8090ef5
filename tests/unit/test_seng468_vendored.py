"""The course files in tests/data/seng468 are the ones SOURCES.md lists, byte for byte (git blob
id, size, lines), and logfile-widened.xsd differs from the course schema only in its two date
bounds."""

from __future__ import annotations

import hashlib
import re

from services.common.config import ROOT

VENDORED = ROOT / "tests" / "data" / "seng468"
SOURCES = VENDORED / "SOURCES.md"
DERIVED = "logfile-widened.xsd"
ROW = re.compile(
    r"^\| (\S+) \| ([\w.-]+/[\w.-]+) \| (\S+) \| ([0-9a-f]{40}) \| ([0-9a-f]{40})"
    r" \| (\d+) \| (\d*) \|$",
    re.MULTILINE,
)


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def rows() -> dict[str, tuple[str, ...]]:
    return {m.group(1): m.groups()[1:] for m in ROW.finditer(SOURCES.read_text())}


def test_every_listed_file_is_here_unchanged():
    listed = rows()
    assert len(listed) == 7
    for local, (_repo, _path, _commit, blob, size, lines) in listed.items():
        data = (VENDORED / local).read_bytes()
        assert git_blob_id(data) == blob, local
        assert len(data) == int(size), local
        if lines:
            assert data.count(b"\n") == int(lines), local


def test_exactly_the_listed_files_are_vendored():
    present = {p.relative_to(VENDORED).as_posix() for p in VENDORED.rglob("*") if p.is_file()}
    assert present - {"SOURCES.md", DERIVED} == set(rows())
    assert {
        "workloads/1userWorkLoad",
        "workloads/2userWorkLoad.txt",
        "workloads/10User_testWorkLoad",
        "workloads/45User_testWorkLoad",
        "workloads/100User_testWorkLoad",
    } <= present
    assert "licen" in SOURCES.read_text().lower()


def test_the_widened_schema_differs_only_in_its_date_bounds():
    course = (VENDORED / "xsd" / "seng468-2022" / "logfile.xsd").read_text().splitlines()
    widened = (VENDORED / DERIVED).read_text().splitlines()
    assert len(course) == len(widened)
    changed = [(a, b) for a, b in zip(course, widened, strict=True) if a != b]
    assert len(changed) == 2
    bounds = [re.search(r'<xsd:(\w+) value="(\d+)"/>', b).groups() for _, b in changed]
    assert bounds == [("minInclusive", "1577836800000"), ("maxInclusive", "4102444800000")]
    for before, _ in changed:
        assert re.search(r'<xsd:(min|max)Inclusive value="16\d{11}"/>', before)
