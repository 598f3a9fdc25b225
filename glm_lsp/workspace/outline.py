"""Tree-sitter outlines: functions, classes, methods and friends with 1-based line ranges.

One query per language captures definition nodes (`@def.<kind>`) and their names (`@name`);
nesting comes from byte-range containment. Grammars load lazily, once; results are cached by
content hash, so an unchanged file is never parsed twice.
"""

from __future__ import annotations

import hashlib
import importlib
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

from tree_sitter import Language, Node, Parser, Query, QueryCursor


@dataclass(frozen=True)
class Symbol:
    name: str
    kind: str  # "function" | "class" | "method" | "struct" | "interface" | "impl" | ...
    start_line: int  # 1-based, inclusive
    end_line: int  # 1-based, inclusive
    children: tuple[Symbol, ...] = ()


# extension -> (grammar module, language function, query key)
_EXTENSIONS: dict[str, tuple[str, str, str]] = {
    ".py": ("tree_sitter_python", "language", "python"),
    ".pyi": ("tree_sitter_python", "language", "python"),
    ".js": ("tree_sitter_javascript", "language", "javascript"),
    ".jsx": ("tree_sitter_javascript", "language", "javascript"),
    ".mjs": ("tree_sitter_javascript", "language", "javascript"),
    ".cjs": ("tree_sitter_javascript", "language", "javascript"),
    ".ts": ("tree_sitter_typescript", "language_typescript", "typescript"),
    ".mts": ("tree_sitter_typescript", "language_typescript", "typescript"),
    ".cts": ("tree_sitter_typescript", "language_typescript", "typescript"),
    ".tsx": ("tree_sitter_typescript", "language_tsx", "typescript"),
    ".go": ("tree_sitter_go", "language", "go"),
    ".rs": ("tree_sitter_rust", "language", "rust"),
    ".c": ("tree_sitter_c", "language", "c"),
    ".h": ("tree_sitter_c", "language", "c"),
    ".lua": ("tree_sitter_lua", "language", "lua"),
}

_JS_COMMON = """
(function_declaration name: (identifier) @name) @def.function
(generator_function_declaration name: (identifier) @name) @def.function
(class_declaration name: (_) @name) @def.class
(method_definition name: (_) @name) @def.method
(lexical_declaration (variable_declarator name: (identifier) @name
  value: [(arrow_function) (function_expression) (generator_function)])) @def.function
(variable_declaration (variable_declarator name: (identifier) @name
  value: [(arrow_function) (function_expression) (generator_function)])) @def.function
"""

_QUERIES: dict[str, str] = {
    "python": """
(function_definition name: (identifier) @name) @def.function
(class_definition name: (identifier) @name) @def.class
""",
    "javascript": _JS_COMMON
    + """
(field_definition property: (_) @name value: [(arrow_function) (function_expression)]) @def.method
""",
    "typescript": _JS_COMMON
    + """
(public_field_definition name: (_) @name
  value: [(arrow_function) (function_expression)]) @def.method
(function_signature name: (identifier) @name) @def.function
(abstract_class_declaration name: (_) @name) @def.class
(interface_declaration name: (_) @name) @def.interface
(enum_declaration name: (_) @name) @def.enum
(type_alias_declaration name: (_) @name) @def.type
(internal_module name: (_) @name) @def.namespace
(method_signature name: (_) @name) @def.method
(abstract_method_signature name: (_) @name) @def.method
""",
    "go": """
(function_declaration name: (identifier) @name) @def.function
(method_declaration name: (field_identifier) @name) @def.method
(type_spec name: (type_identifier) @name) @def.type
(method_elem name: (field_identifier) @name) @def.method
""",
    "rust": """
(function_item name: (identifier) @name) @def.function
(function_signature_item name: (identifier) @name) @def.function
(struct_item name: (type_identifier) @name) @def.struct
(union_item name: (type_identifier) @name) @def.union
(enum_item name: (type_identifier) @name) @def.enum
(trait_item name: (type_identifier) @name) @def.trait
(impl_item type: (_) @name) @def.impl
(mod_item name: (identifier) @name) @def.module
(macro_definition name: (identifier) @name) @def.macro
""",
    "c": """
(function_definition declarator: (_) @decl) @def.function
(struct_specifier name: (type_identifier) @name body: (_)) @def.struct
(union_specifier name: (type_identifier) @name body: (_)) @def.union
(enum_specifier name: (type_identifier) @name body: (_)) @def.enum
(type_definition type: (struct_specifier !name body: (_))
  declarator: (type_identifier) @name) @def.struct
(type_definition type: (enum_specifier !name body: (_))
  declarator: (type_identifier) @name) @def.enum
""",
    "lua": """
(function_declaration name: (_) @name) @def.function
(assignment_statement (variable_list . name: (_) @name .)
  (expression_list . value: (function_definition) .)) @def.function
""",
}

# Functions directly inside these become methods.
_CONTAINERS = frozenset({"class", "interface", "impl", "trait", "struct"})
# Parents whose range belongs to the definition (decorators, `export`, `local`).
_WRAPPERS = frozenset({"decorated_definition", "export_statement", "variable_declaration"})
_CACHE_SIZE = 4096
# A generated file can hold tens of thousands of symbols: the outline tool and the prompt's
# outline stay within a model's context.
MAX_OUTLINE = 500
_MAX_NAME = 200


def language_for(rel: str) -> str | None:
    """Query key of the language for a path, or None when there is no grammar for it."""
    dot = rel.rfind(".")
    spec = _EXTENSIONS.get(rel[dot:].lower()) if dot > rel.rfind("/") else None
    return spec[2] if spec else None


@cache
def _grammar(ext: str) -> tuple[Language, Query]:
    module, func, key = _EXTENSIONS[ext]
    language = Language(getattr(importlib.import_module(module), func)())
    return language, Query(language, _QUERIES[key])


_local = threading.local()
_cache: OrderedDict[tuple[str, bytes], list[Symbol]] = OrderedDict()
_cache_lock = threading.Lock()


def parse_outline(rel: str, text: str) -> list[Symbol]:
    """Outline of `text` as the file `rel` (its extension picks the grammar); [] if unsupported."""
    dot = rel.rfind(".")
    ext = rel[dot:].lower() if dot > rel.rfind("/") else ""
    if ext not in _EXTENSIONS:
        return []
    data = text.encode("utf-8", errors="replace")
    key = (ext, hashlib.blake2b(data, digest_size=16).digest())
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    symbols = _build(ext, data)
    with _cache_lock:
        _cache[key] = symbols
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return symbols


def _build(ext: str, data: bytes) -> list[Symbol]:
    language, query = _grammar(ext)
    parsers = _local.__dict__.setdefault("parsers", {})
    parser = parsers.get(ext)
    if parser is None:  # Parser objects are not shared between threads.
        parser = parsers[ext] = Parser(language)
    tree = parser.parse(data)
    found: dict[tuple[int, int, str], tuple[str, Node]] = {}
    for _pattern, caps in QueryCursor(query).matches(tree.root_node):
        kind = next((k[4:] for k in caps if k.startswith("def.")), None)
        if kind is None:
            continue
        node = caps["def." + kind][0]
        name = _name(node, kind, caps)
        if name:
            node = _outer(node)
            found.setdefault((node.start_byte, -node.end_byte, name), (kind, node))
    return _nest(found)


def _name(node: Node, kind: str, caps: dict[str, list[Node]]) -> str | None:
    if "decl" in caps:  # C: dig through pointer/paren declarators to the function's name
        d: Node | None = caps["decl"][0]
        while d is not None and d.type != "function_declarator":
            d = d.child_by_field_name("declarator")
        d = d.child_by_field_name("declarator") if d is not None else None
        return _text(d) if d is not None else None
    name = _text(caps["name"][0]) if "name" in caps else None
    if kind == "impl" and (trait := node.child_by_field_name("trait")) is not None:
        return f"{_text(trait)} for {name}"
    if node.type == "method_declaration":  # Go: "Recv.Method" says which type it belongs to
        recv = node.child_by_field_name("receiver")
        ids = [n for n in _walk(recv) if n.type == "type_identifier"] if recv else []
        return f"{_text(ids[0])}.{name}" if ids else name
    return name


def _walk(node: Node):
    yield node
    for child in node.named_children:
        yield from _walk(child)


def _outer(node: Node) -> Node:
    parent = node.parent
    while parent is not None and parent.type in _WRAPPERS:
        node, parent = parent, parent.parent
    return node


def _text(node: Node) -> str:
    return (node.text or b"").decode("utf-8", errors="replace").split("\n", 1)[0].strip()


def _kind_of(kind: str, node: Node) -> str:
    if node.type == "type_spec":  # Go: say what kind of type it is
        body = node.child_by_field_name("type")
        return {"struct_type": "struct", "interface_type": "interface"}.get(
            body.type if body else "", "type"
        )
    name = node.child_by_field_name("name")
    if name is not None and name.type == "method_index_expression":
        return "method"  # Lua `function M:h()` takes an implicit self
    return kind


def _lines(node: Node) -> tuple[int, int]:
    # Attributes (#[derive], #[test]) sit before a Rust item as siblings; they belong to it.
    start = node
    while (prev := start.prev_named_sibling) is not None and prev.type == "attribute_item":
        start = prev
    end_row, end_col = node.end_point
    if end_col == 0 and end_row > node.start_point[0]:
        end_row -= 1  # the node stops at the start of the next line
    return start.start_point[0] + 1, end_row + 1


def _nest(found: dict[tuple[int, int, str], tuple[str, Node]]) -> list[Symbol]:
    # Sorted by (start, -end): a parent always precedes what it contains.
    roots: list[list] = []
    stack: list[tuple[int, list]] = []  # (end_byte, [name, kind, start, end, children])
    for (start_byte, neg_end, name), (kind, node) in sorted(found.items()):
        while stack and stack[-1][0] <= start_byte:
            stack.pop()
        parent = stack[-1][1] if stack and -neg_end <= stack[-1][0] else None
        kind = _kind_of(kind, node)
        if kind == "function" and parent is not None and parent[1] in _CONTAINERS:
            kind = "method"
        item = [name, kind, *_lines(node), []]
        (parent[4] if parent is not None else roots).append(item)
        stack.append((-neg_end, item))
    return [_freeze(i) for i in roots]


def _freeze(item: list) -> Symbol:
    name, kind, start, end, children = item
    return Symbol(name, kind, start, end, tuple(_freeze(c) for c in children))


def innermost(symbols: list[Symbol] | tuple[Symbol, ...], line: int) -> Symbol | None:
    """The deepest symbol whose line range contains `line`."""
    for sym in symbols:
        if sym.start_line <= line <= sym.end_line:
            return innermost(sym.children, line) or sym
    return None


def format_outline(
    symbols: list[Symbol] | tuple[Symbol, ...], indent: int = 0, *, max_lines: int = MAX_OUTLINE
) -> str:
    """Compact text for the model: one symbol a line, children indented two spaces; at most
    `max_lines` lines, then a note saying how many were left out."""
    lines = list(_outline_lines(symbols, indent))
    if len(lines) <= max_lines:
        return "\n".join(lines)
    left = len(lines) - max_lines
    return "\n".join(lines[:max_lines]) + (
        f"\n[outline truncated: {left} more symbols; read_file with start_line/end_line]"
    )


def _outline_lines(symbols: list[Symbol] | tuple[Symbol, ...], indent: int) -> Iterator[str]:
    for s in symbols:
        name = s.name if len(s.name) <= _MAX_NAME else s.name[:_MAX_NAME] + "…"
        yield f"{'  ' * indent}{s.kind} {name} (lines {s.start_line}-{s.end_line})"
        yield from _outline_lines(s.children, indent + 1)
