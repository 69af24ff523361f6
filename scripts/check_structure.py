#!/usr/bin/env python3
"""The three house rules that keep ordership's crates readable, checked over the source files:

  length   no file under a crate's src/ has more than 400 lines before its `#[cfg(test)]` module;
  circles  the files and folders (modules) of one crate import each other in one direction only;
  map      the code map in ARCHITECTURE.md names every source file of every crate.

  scripts/check_structure.py [length|circles|map ...]     (all three when none is named)

Each failing rule prints what breaks it (the files, the circle, the missing modules) and the script
exits 1. Files under a crate's tests/ are not counted; in-file test modules are not read.
"""

import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 400
TEST_MODULE = re.compile(r"^#\[cfg\(test\)\]", re.M)


def crates():
    """(crate folder, its src folder) of every workspace member with a library or binary."""
    manifest = (ROOT / "Cargo.toml").read_text()
    members = re.search(r"members\s*=\s*\[(.*?)\]", manifest, re.S).group(1)
    for member in re.findall(r'"([^"]+)"', members):
        src = ROOT / member / "src"
        if src.is_dir():
            yield member, src


def sources(src):
    return sorted(p for p in src.rglob("*.rs") if p.is_file())


def before_tests(path):
    text = path.read_text()
    match = TEST_MODULE.search(text)
    return text[: match.start()] if match else text


def module_of(src, path):
    """The module path of a file: src/a/b.rs and src/a/b/mod.rs are ["a", "b"]; lib.rs is []."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "mod" or (len(parts) == 1 and parts[0] in ("lib", "main")):
        parts = parts[:-1]
    return parts


# --- length ---------------------------------------------------------------------------------------


def check_length():
    offenders = []
    for member, src in crates():
        for path in sources(src):
            n = before_tests(path).count("\n")
            if n > MAX_LINES:
                offenders.append(f"{path.relative_to(ROOT)} ({n})")
    if offenders:
        return [f"source files over {MAX_LINES} lines before their tests — split them by concept:"] + [
            f"  {o}" for o in offenders
        ]
    return []


# --- circles --------------------------------------------------------------------------------------

USE = re.compile(r"\buse\s+([^;]+);", re.S)
INLINE = re.compile(r"\b((?:crate|super)(?:::\w+)+)")
# Comments, strings (raw too) and char literals, in one pass so that none hides inside another.
CODE_NOISE = re.compile(
    r"//[^\n]*"
    r"|/\*.*?\*/"
    r"|b?r(#*)\"(?:.|\n)*?\"\1"
    r'|b?"(?:\\.|[^"\\])*"'
    r"|b?'(?:\\.|[^'\\])'",
    re.S,
)


def expand(tree):
    """`a::{b, c::{d, e}}` → ["a::b", "a::c::d", "a::c::e"]."""
    tree = re.sub(r"\s+", "", tree)
    depth, start = 0, None
    for i, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                prefix, inner, rest = tree[:start], tree[start + 1 : i], tree[i + 1 :]
                parts, level, last = [], 0, 0
                for j, c in enumerate(inner):
                    level += c == "{"
                    level -= c == "}"
                    if c == "," and level == 0:
                        parts.append(inner[last:j])
                        last = j + 1
                parts.append(inner[last:])
                return [p for part in parts if part for p in expand(prefix + part + rest)]
    return [tree]


def resolve(path, here, modules):
    """The module a `crate::…`/`super::…`/`self::…` path points into, or None for another crate."""
    segments = [s for s in re.sub(r"\bas\b.*$", "", path).split("::") if s]
    if not segments:
        return None
    if segments[0] == "crate":
        base, rest = [], segments[1:]
    elif segments[0] in ("super", "self"):
        base = list(here)
        rest = segments
        while rest and rest[0] in ("super", "self"):
            if rest[0] == "super":
                base = base[:-1]
            rest = rest[1:]
    else:
        return None
    target = list(base)
    for segment in rest:
        if tuple(target + [segment]) in modules:
            target.append(segment)
        else:
            break
    return tuple(target)


def edges_of(src):
    files = {tuple(module_of(src, p)): p for p in sources(src) if p.name != "main.rs" or not (src / "lib.rs").exists()}
    modules = set(files)
    edges = {}
    for module, path in files.items():
        text = CODE_NOISE.sub(" ", before_tests(path))
        here = list(module)
        # A file's own module is `self`; `super` of a/b.rs is a, of a/mod.rs the crate root.
        paths = [p for tree in USE.findall(text) for p in expand(tree)] + INLINE.findall(text)
        for p in paths:
            target = resolve(p, here, modules)
            if target is None or target == module:
                continue
            edges.setdefault(module, {}).setdefault(target, path)
    return files, edges


def sibling_edge(a, b):
    """The edge a→b seen between the two children of their deepest common module, or None when one
    contains the other (a folder's mod.rs and its files may use each other)."""
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    if k == len(a) or k == len(b):
        return None
    return tuple(a[:k]), a[k], b[k]


def find_cycle(graph):
    state, stack = {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def check_circles():
    problems = []
    for member, src in crates():
        files, edges = edges_of(src)
        by_parent, witness = {}, {}
        for a, targets in edges.items():
            for b, path in targets.items():
                seen = sibling_edge(a, b)
                if seen:
                    parent, x, y = seen
                    by_parent.setdefault(parent, {}).setdefault(x, set()).add(y)
                    witness.setdefault((parent, x, y), (a, b))
        for parent, graph in sorted(by_parent.items()):
            cycle = find_cycle(graph)
            if cycle:
                where = "::".join(parent) or "the crate root"
                steps = []
                for x, y in zip(cycle, cycle[1:]):
                    a, b = witness[(parent, x, y)]
                    steps.append(f"{'::'.join(a)} uses {'::'.join(b)}")
                problems.append(f"  {member}: {' → '.join(cycle)} (in {where}: {'; '.join(steps)})")
    if problems:
        return ["import circles between the files or folders of a crate:"] + problems
    return []


# --- map ------------------------------------------------------------------------------------------


def check_map():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    match = re.search(r"^## Code map\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    if not match:
        return ["ARCHITECTURE.md has no '## Code map' section"]
    section = match.group(1)
    missing = []
    for member, src in crates():
        block = re.search(
            r"^### [^\n]*`" + re.escape(member) + r"/`[^\n]*\n(.*?)(?=^### |\Z)", section, re.S | re.M
        )
        if not block:
            missing.append(f"  {member}/: no '### … `{member}/`' part in the code map")
            continue
        named = set(re.findall(r"`([^`]+)`", block.group(1)))
        present = {path.relative_to(src).as_posix() for path in sources(src)}
        missing += [f"  {member}/src/{rel}" for rel in sorted(present - named)]
        missing += [f"  {member}/src/{rel} (named, but there is no such file)" for rel in sorted(named - present) if rel.endswith(".rs")]
    if missing:
        return ["the code map in ARCHITECTURE.md does not name these source files:"] + missing
    return []


RULES = {"length": check_length, "circles": check_circles, "map": check_map}


def main(argv):
    names = argv or list(RULES)
    unknown = [n for n in names if n not in RULES]
    if unknown:
        print(f"unknown rule(s) {unknown}; the rules are {list(RULES)}", file=sys.stderr)
        return 2
    failed = False
    for name in names:
        problems = RULES[name]()
        if problems:
            failed = True
            print(f"FAILED ({name}): " + "\n".join(problems), file=sys.stderr)
        else:
            print(f"ok: {name}")
    return 1 if failed else 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main(sys.argv[1:]))
