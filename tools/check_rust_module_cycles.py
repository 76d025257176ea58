#!/usr/bin/env python3
"""Fail on an import cycle between the Rust core's files or between its folders.

Reads src/**/*.rs (or the directory given), finds every reference from one module to another
(`use crate::...`, `use super::...`, `use self::...`, relative `use child::...` in a module that
declares `mod child;`, and path-qualified references such as `crate::fork::generation()` in code),
resolves each to the file that defines the module (through the `pub use` re-exports of a folder's
`mod.rs`, so that a facade does not hide which file an item comes from), and builds two graphs:

- files: one node per .rs file;
- folders: one node per top-level entry of src/ (a folder, or a file directly under src/).

`mod x;` declarations are not dependencies (a parent declares its children). Comments and string
literals are ignored. Exits 1, naming each cycle, if either graph has one; 0 otherwise.

    python3 tools/check_rust_module_cycles.py [src-dir]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
RAW_STRING = re.compile(r'r(#*)"')
CHAR_LITERAL = re.compile(r"'(\\.[^']*|[^'\\])'")


def strip_comments_and_strings(text: str) -> str:
    """Blanks out comments, string and char literals, keeping line structure."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == "r" and (m := RAW_STRING.match(text, i)) and (i == 0 or not text[i - 1].isalnum()):
            end = '"' + m.group(1)
            j = text.find(end, i + len(m.group(0)))
            j = n if j < 0 else j + len(end)
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{..}'), not a lifetime ('a).
            m = CHAR_LITERAL.match(text, i)
            if m:
                out.append("' '")
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def expand_use_tree(tree: str) -> list[list[str]]:
    """`a::{b, c::{d, e}}` -> [[a, b], [a, c, d], [a, c, e]]; globs dropped; `b as x` -> `b@x`."""
    # `x as y`: kept as `x@y`, the path names x, the name it is known by is y.
    tree = re.sub(r"\s+as\s+(" + IDENT + ")", r"@\1", tree)
    tree = re.sub(r"\s+", "", tree)

    def parse(s: str, prefix: list[str]) -> list[list[str]]:
        paths = []
        for part in split_top(s):
            if not part:
                continue
            if "{" in part:
                head, _, rest = part.partition("{")
                inner = rest[: rest.rfind("}")]
                segs = [x for x in head.split("::") if x]
                paths.extend(parse(inner, prefix + segs))
            else:
                segs = [x for x in part.split("::") if x and x != "*"]
                paths.append(prefix + segs)
        return paths

    def split_top(s: str) -> list[str]:
        parts, depth, cur = [], 0, []
        for ch in s:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append("".join(cur))
                cur = []
            else:
                cur.append(ch)
        parts.append("".join(cur))
        return parts

    return parse(tree, [])


class Crate:
    def __init__(self, src: Path):
        self.src = src
        self.files: dict[tuple[str, ...], Path] = {}  # module path -> file
        for path in sorted(src.rglob("*.rs")):
            rel = path.relative_to(src).with_suffix("")
            parts = list(rel.parts)
            if parts == ["lib"] or parts == ["main"]:
                mod: tuple[str, ...] = ()
            elif parts[-1] == "mod":
                mod = tuple(parts[:-1])
            else:
                mod = tuple(parts)
            self.files[mod] = path
        self.texts = {m: strip_comments_and_strings(p.read_text()) for m, p in self.files.items()}
        # Child modules declared by `mod x;` in each file, and the names each re-exports.
        self.children: dict[tuple[str, ...], set[str]] = {}
        self.reexports: dict[tuple[str, ...], dict[str, tuple[str, ...]]] = {}
        for mod, text in self.texts.items():
            self.children[mod] = set(re.findall(r"\bmod\s+(" + IDENT + r")\s*;", text))
        for mod, text in self.texts.items():
            table: dict[str, tuple[str, ...]] = {}
            for m in re.finditer(r"\bpub(?:\s*\([^)]*\))?\s+use\s+([^;]+);", text):
                for segs in expand_use_tree(m.group(1)):
                    if len(segs) < 2:
                        continue
                    item, _, alias = segs[-1].partition("@")
                    target = self.resolve_segments(mod, segs[:-1])
                    if target is not None:
                        table[alias or item] = target + (item,)
            self.reexports[mod] = table

    def resolve_segments(self, here: tuple[str, ...], segs: list[str]) -> tuple[str, ...] | None:
        """An absolute module path for `segs` seen in module `here` (None: not this crate)."""
        segs = list(segs)
        if not segs:
            return None
        if segs[0] == "crate":
            base: list[str] = []
            segs = segs[1:]
        elif segs[0] in ("self", "super"):
            base = list(here)
            while segs and segs[0] in ("self", "super"):
                if segs[0] == "super":
                    if not base:
                        return None
                    base.pop()
                segs = segs[1:]
        elif segs[0] in self.children.get(self.file_module(here), set()) and len(here) == len(self.file_module(here)):
            base = list(here)
        else:
            return None
        return tuple(base + segs)

    def file_module(self, mod: tuple[str, ...]) -> tuple[str, ...]:
        """The longest prefix of `mod` that has a file of its own."""
        mod = tuple(mod)
        while mod not in self.files:
            if not mod:
                return ()
            mod = mod[:-1]
        return mod

    def target_file(self, path: tuple[str, ...]) -> tuple[str, ...]:
        """The file that defines what `path` (module path, maybe ending in an item) names."""
        mod = self.file_module(path)
        rest = path[len(mod) :]
        seen = 0
        while rest and rest[0] in self.reexports.get(mod, {}) and seen < 32:
            # The re-exported item's own path (under its own name), then the rest.
            target = self.reexports[mod][rest[0]] + rest[1:]
            mod = self.file_module(target)
            rest = target[len(mod) :]
            seen += 1
        return mod

    def references(self, mod: tuple[str, ...]) -> list[tuple[tuple[str, ...], int]]:
        """(target file module, line) for every reference in file `mod` to another module."""
        text = self.texts[mod]
        refs: list[tuple[tuple[str, ...], int]] = []

        # Inline modules (`mod tests { ... }`): the module path at each offset.
        inline: list[tuple[int, int, str]] = []  # (start, end, name)
        for m in re.finditer(r"\bmod\s+(" + IDENT + r")\s*\{", text):
            depth, j = 1, m.end()
            while j < len(text) and depth:
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            inline.append((m.start(), j, m.group(1)))

        def module_at(offset: int) -> tuple[str, ...]:
            names = [name for (s, e, name) in inline if s <= offset < e]
            return mod + tuple(names)

        def line_of(offset: int) -> int:
            return text.count("\n", 0, offset) + 1

        def add(here: tuple[str, ...], segs: list[str], offset: int) -> None:
            segs = [seg.partition("@")[0] for seg in segs]
            path = self.resolve_segments(here, segs)
            if path is None:
                return
            refs.append((self.target_file(path), line_of(offset)))

        use_spans = []
        # Names a `use` binds to a path of this crate (`use crate::record::{self, Name}` binds
        # `record` and `Name`), so that `record::parent(...)` further down resolves too.
        bound: dict[str, tuple[str, ...]] = {}
        for m in re.finditer(r"\buse\s+([^;]+);", text):
            use_spans.append((m.start(), m.end()))
            for segs in expand_use_tree(m.group(1)):
                add(module_at(m.start()), segs, m.start())
                item, _, alias = segs[-1].partition("@") if segs else ("", "", "")
                plain = [seg.partition("@")[0] for seg in segs]
                if item == "self":
                    plain, item = plain[:-1], plain[-2] if len(plain) > 1 else ""
                path = self.resolve_segments(module_at(m.start()), plain)
                if path is not None and (alias or item) not in ("self", "super", "crate", ""):
                    bound[alias or item] = path

        in_use = lambda off: any(s <= off < e for s, e in use_spans)  # noqa: E731
        path_re = re.compile(r"(?<![\w:])((?:" + IDENT + r"\s*::\s*)+" + IDENT + r")")
        for m in path_re.finditer(text):
            if in_use(m.start()):
                continue
            segs = [s.strip() for s in m.group(1).split("::")]
            here = module_at(m.start())
            if segs[0] in bound and segs[0] not in self.children.get(mod, set()):
                refs.append((self.target_file(bound[segs[0]] + tuple(segs[1:])), line_of(m.start())))
                continue
            if segs[0] in ("crate", "self", "super") or segs[0] in self.children.get(mod, set()):
                # A bare `child::` path only names a child in the file that declares it.
                if segs[0] not in ("crate", "self", "super") and len(here) != len(mod):
                    continue
                add(here, segs, m.start())
        return refs


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each as a cycle's nodes."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                result.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return result


def one_cycle(graph: dict[str, set[str]], comp: list[str]) -> list[str]:
    """A concrete cycle through the component's first node, for the message."""
    members = set(comp)
    start = comp[0]
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [start] + path[::-1][1:] + [start] if len(path) > 1 else [start, v, start]
                if w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    return comp


def main(argv: list[str]) -> int:
    src = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / "src"
    crate = Crate(src)

    def file_name(mod: tuple[str, ...]) -> str:
        return str(crate.files[mod].relative_to(src))

    def folder_name(mod: tuple[str, ...]) -> str:
        rel = crate.files[mod].relative_to(src)
        return rel.parts[0] + "/" if len(rel.parts) > 1 else rel.parts[0]

    files: dict[str, set[str]] = {file_name(m): set() for m in crate.files}
    folders: dict[str, set[str]] = {folder_name(m): set() for m in crate.files}
    where: dict[tuple[str, str], int] = {}
    for mod in crate.files:
        for target, line in crate.references(mod):
            a, b = file_name(mod), file_name(target)
            if a != b:
                files[a].add(b)
                where.setdefault((a, b), line)
            fa, fb = folder_name(mod), folder_name(target)
            if fa != fb:
                folders[fa].add(fb)
                where.setdefault((fa, fb), line)

    failed = False
    for label, graph in (("file", files), ("folder", folders)):
        for comp in find_cycles(graph):
            failed = True
            cycle = one_cycle(graph, comp)
            print(f"{label} import cycle among {{{', '.join(comp)}}}: {' -> '.join(cycle)}")
    if not failed:
        print(f"no import cycle among {len(files)} files and {len(folders)} top-level modules of {src}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
