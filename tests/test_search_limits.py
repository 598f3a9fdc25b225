"""Bounded tool work: regex search runs on RE2 (no catastrophic backtracking), stops at a time and
a hit bound with a note for the model, names regex syntax RE2 lacks; outlines are capped."""

from __future__ import annotations

from pathlib import Path

import pytest

from glm_lsp.agent.edits import Overlay
from glm_lsp.agent.files import Workspace
from glm_lsp.agent.tools import ToolBox
from glm_lsp.textfile import decode
from glm_lsp.workspace import WorkspaceIndex, format_outline
from glm_lsp.workspace.outline import MAX_OUTLINE

# 5000 a's then "b": Python's re needs about 2**5000 steps to see that `(a+)+$` fails here.
EVIL_LINE = "a" * 5000 + "b"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "evil.txt").write_text(f"{EVIL_LINE}\naaa\n")
    (ws / "src" / "a.py").write_text("def foo():\n    return 'aaa'\n")
    return ws


def toolbox(root: Path) -> ToolBox:
    ws = Workspace(root, root / ".glm-lsp", lambda rel: None)
    index = WorkspaceIndex(root)
    index.scan()
    return ToolBox(ws, index, Overlay(ws))


def test_catastrophic_pattern_is_linear(root: Path) -> None:
    ix = WorkspaceIndex(root)
    assert ix.search(r"(a+)+$", regex=True) == ["src/evil.txt:2: aaa"]
    # The block pre-check and per-line matching agree: anchors, classes, flags.
    assert ix.search(r"^def \w+\(", regex=True) == ["src/a.py:1: def foo():"]
    assert ix.search(r"(?i)RETURN 'A+'$", regex=True) == ["src/a.py:2:     return 'aaa'"]
    assert ix.search(r"\Aaaa\z", regex=True) == ["src/evil.txt:2: aaa"]


@pytest.mark.parametrize(
    ("pattern", "feature"),
    [
        (r"foo(?=\()", "lookahead (?=...)"),
        (r"foo(?!\()", "negative lookahead (?!...)"),
        (r"(?<=def )\w+", "lookbehind (?<=...)"),
        (r"(?<!x)foo", "negative lookbehind (?<!...)"),
        (r"(a)\1", r"a backreference \N"),
        (r"(?P<q>')x(?P=q)", "backreference (?P=name)"),
        (r"(?>a+)b", "atomic group (?>...)"),
        (r"a*+b", "possessive quantifier *+"),
    ],
)
def test_unsupported_regex_syntax_is_named(root: Path, pattern: str, feature: str) -> None:
    result = toolbox(root).run("search", {"pattern": pattern, "regex": True})
    assert result.startswith("Error: search failed: "), result
    assert f"uses {feature}, which search does not support" in result, result
    assert "RE2 syntax" in result


def test_bad_and_oversized_patterns_are_refused(root: Path) -> None:
    box = toolbox(root)
    assert "invalid regular expression '(unclosed'" in box.run(
        "search", {"pattern": "(unclosed", "regex": True}
    )
    assert "too complex for search" in box.run(
        "search", {"pattern": "[ab]{1000}[cd]{1000}", "regex": True}
    )
    assert "at most 1000" in box.run("search", {"pattern": "x" * 1001, "regex": True})
    # A literal search of the same text is no regex at all.
    assert box.run("search", {"pattern": "(?<=a)"}) == "no matches for '(?<=a)'"


def test_time_bound_stops_with_a_note(root: Path) -> None:
    ix = WorkspaceIndex(root)
    for regex in (False, True):
        hits = ix.search("aaa", regex=regex, time_limit=0)
        assert hits == [] and hits.note == "[search stopped after 0 s; narrow the path]"
    done = ix.search("aaa")
    assert len(done) == 3 and done.note is None


def test_hit_bound_is_said(root: Path) -> None:
    box = toolbox(root)
    (root / "many.txt").write_text("hit\n" * 500)
    box.index.scan()
    lines = box.run("search", {"pattern": "hit"}).splitlines()
    assert len(lines) == 200
    assert lines[-1] == "[stopped at 199 matches; narrow the pattern or path]"
    assert lines[0] == "many.txt:1: hit"


def test_outline_is_capped(root: Path) -> None:
    body = "".join(f"def f{i}():\n    pass\n" for i in range(3 * MAX_OUTLINE))
    (root / "gen.py").write_text(f"class {'N' * 500}:\n    pass\n" + body)
    box = toolbox(root)
    lines = box.run("outline", {"path": "gen.py"}).splitlines()
    assert len(lines) == MAX_OUTLINE + 1
    assert lines[0] == f"class {'N' * 200}… (lines 1-2)"  # a giant name is clipped too
    assert lines[-1] == (
        f"[outline truncated: {2 * MAX_OUTLINE + 1} more symbols; "
        "read_file with start_line/end_line]"
    )
    small = WorkspaceIndex(root).outline("src/a.py")
    assert format_outline(small) == "function foo (lines 1-2)"


def test_index_search_reads_files_as_the_tools_do(root: Path) -> None:
    """A cp1252 file is searched as read_file decodes it (never U+FFFD), a CRLF file without \r."""
    legacy = "caf\xe9 cr\xe8me br\xfbl\xe9e\n".encode("cp1252")
    (root / "src" / "legacy.txt").write_bytes(legacy)
    (root / "src" / "dos.txt").write_bytes(b"one\r\ntwo\r\n")
    ix = WorkspaceIndex(root)
    # charset-normalizer's guess for so short a text may be another Latin code page; the search
    # shows what the tools show, whatever the guess.
    shown = decode(legacy).text.rstrip("\n")
    assert "\ufffd" not in shown
    assert ix.search("caf", regex=False) == [f"src/legacy.txt:1: {shown}"]
    assert ix.search(r"^two$", regex=True) == ["src/dos.txt:2: two"]
