"""Tree-sitter outlines for every supported language, with line ranges checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from glm_lsp.workspace import Symbol, WorkspaceIndex, format_outline

PY = '''import os


@decorator
def top(a):
    def inner():
        pass
    return a


class Foo(Base):
    """Doc."""

    def bar(self):
        return 1

    @property
    def baz(self):
        return 2
'''

JS = """export function f() {
  return 1;
}
class A {
  m() {}
  g = () => 2;
}
const h = async () => {
  return 3;
};
"""

TS = """export interface I {
  x(): void;
}
export class C implements I {
  x(): void {}
}
type T = { a: number };
enum E { A, B }
const k = (a: number): number => a;
"""

TSX = """export default function App() {
  return <div />;
}
const Btn = () => <button />;
"""

GO = """package p

type S struct {
\tx int
}

func (s *S) M() {
}

func F() {}
"""

RUST = """#[derive(Debug)]
struct S {
    x: i32,
}

impl S {
    fn new() -> Self {
        S { x: 1 }
    }
}

trait Tr {
    fn a(&self);
}

fn main() {}
"""

C = """#include <stdio.h>

static int *f(int a) {
    return 0;
}

struct S { int x; };

int main(void) {
    return 0;
}
"""

LUA = """local M = {}

local function helper(a)
  return a
end

function M.g()
end

function M:h()
end

return M
"""


def flat(symbols: list[Symbol] | tuple[Symbol, ...], depth: int = 0) -> list[tuple]:
    out = []
    for s in symbols:
        out.append((depth, s.kind, s.name, s.start_line, s.end_line))
        out += flat(s.children, depth + 1)
    return out


CASES = {
    "a.py": (
        PY,
        [
            (0, "function", "top", 4, 8),  # decorator included
            (1, "function", "inner", 6, 7),
            (0, "class", "Foo", 11, 19),
            (1, "method", "bar", 14, 15),
            (1, "method", "baz", 17, 19),
        ],
    ),
    "a.js": (
        JS,
        [
            (0, "function", "f", 1, 3),
            (0, "class", "A", 4, 7),
            (1, "method", "m", 5, 5),
            (1, "method", "g", 6, 6),
            (0, "function", "h", 8, 10),
        ],
    ),
    "a.ts": (
        TS,
        [
            (0, "interface", "I", 1, 3),
            (1, "method", "x", 2, 2),
            (0, "class", "C", 4, 6),
            (1, "method", "x", 5, 5),
            (0, "type", "T", 7, 7),
            (0, "enum", "E", 8, 8),
            (0, "function", "k", 9, 9),
        ],
    ),
    "a.tsx": (TSX, [(0, "function", "App", 1, 3), (0, "function", "Btn", 4, 4)]),
    "a.go": (
        GO,
        [(0, "struct", "S", 3, 5), (0, "method", "S.M", 7, 8), (0, "function", "F", 10, 10)],
    ),
    "a.rs": (
        RUST,
        [
            (0, "struct", "S", 1, 4),  # attribute included
            (0, "impl", "S", 6, 10),
            (1, "method", "new", 7, 9),
            (0, "trait", "Tr", 12, 14),
            (1, "method", "a", 13, 13),
            (0, "function", "main", 16, 16),
        ],
    ),
    "a.c": (
        C,
        [(0, "function", "f", 3, 5), (0, "struct", "S", 7, 7), (0, "function", "main", 9, 11)],
    ),
    "a.lua": (
        LUA,
        [
            (0, "function", "helper", 3, 5),
            (0, "function", "M.g", 7, 8),
            (0, "method", "M:h", 10, 11),
        ],
    ),
}


@pytest.fixture
def index(tmp_path: Path) -> WorkspaceIndex:
    for name, (text, _) in CASES.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "notes.txt").write_text("def not_code():\n")
    ix = WorkspaceIndex(tmp_path)
    ix.scan()
    return ix


@pytest.mark.parametrize("name", sorted(CASES))
def test_outline_per_language(index: WorkspaceIndex, name: str) -> None:
    text, expected = CASES[name]
    assert flat(index.outline(name)) == expected  # from disk
    assert flat(index.outline(name, text)) == expected  # from a buffer


def test_outline_of_unsupported_or_missing_file_is_empty(index: WorkspaceIndex) -> None:
    assert index.outline("notes.txt") == []
    assert index.outline("missing.py") == []


def test_outline_follows_buffer_text_not_disk(index: WorkspaceIndex) -> None:
    assert [s.name for s in index.outline("a.py", "def only():\n    pass\n")] == ["only"]


def test_format_outline() -> None:
    text, _ = CASES["a.py"]
    ix = WorkspaceIndex(Path("."))
    assert format_outline(ix.outline("x.py", text)) == (
        "function top (lines 4-8)\n"
        "  function inner (lines 6-7)\n"
        "class Foo (lines 11-19)\n"
        "  method bar (lines 14-15)\n"
        "  method baz (lines 17-19)"
    )


def test_enclosing_symbol(index: WorkspaceIndex) -> None:
    text, _ = CASES["a.py"]
    assert index.enclosing_symbol("a.py", text, 15).name == "bar"  # inside a method
    assert index.enclosing_symbol("a.py", text, 12).name == "Foo"  # class body, outside methods
    assert index.enclosing_symbol("a.py", text, 7).name == "inner"  # innermost wins
    assert index.enclosing_symbol("a.py", text, 4).name == "top"  # the decorator line
    assert index.enclosing_symbol("a.py", text, 1) is None
    rust, _ = CASES["a.rs"]
    assert index.enclosing_symbol("a.rs", rust, 8).kind == "method"
    assert index.enclosing_symbol("notes.txt", "def x():\n", 1) is None


def test_broken_source_still_outlines(index: WorkspaceIndex) -> None:
    text = "def ok():\n    return 1\n\ndef broken(:\n    pass\n"
    assert index.outline("b.py", text)[0].name == "ok"  # tree-sitter recovers from errors
