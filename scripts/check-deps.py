#!/usr/bin/env python3
"""Checks that the dependencies between the C files of src/ point one way.

Two graphs are built from the sources, without compiling them:

  includes  file -> the headers of src/ it #includes
  calls     X.c -> Y.c when X.c uses a symbol (function or variable) that
            Y.c defines without `static`

and each must be acyclic.  The second graph is what the first cannot see:
a header included one way while its functions are called back the other
way.  Callbacks passed as function pointers are not edges, which is how a
lower module hands work to a higher one.

Prints each file's dependencies, one line per file, lowest layers first,
then "deps: no cycles" and exits 0; or prints each cycle found and exits 1.
The last line has the form "<name>: N passed, M failed" that the unit-test
suite (test/unit/Makefile) counts.

Usage: scripts/check-deps.py [src directory]   (default: src/ next to scripts/)
"""
import os
import re
import sys

SRC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
SRC = os.path.normpath(SRC)

C_KEYWORDS = {
    "if", "else", "for", "while", "do", "switch", "case", "default", "return", "break", "continue",
    "goto", "sizeof", "typedef", "struct", "union", "enum", "static", "extern", "const", "volatile",
    "inline", "register", "signed", "unsigned", "void", "char", "short", "int", "long", "float",
    "double", "bool", "true", "false",
}


def strip(text):
    """The text without comments, string and character literals (kept as placeholders)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "/" and text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
            out.append(" ")
        elif c == "/" and text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append('""' if c == '"' else "' '")
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def top_level_statements(code):
    """Statements at brace depth 0: (text, has_body)."""
    stmts = []
    depth = 0
    start = 0
    i = 0
    for i, c in enumerate(code):
        if c == "{":
            if depth == 0:
                head = code[start:i]
                stmts.append((head, True))
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                start = i + 1
        elif c == ";" and depth == 0:
            stmts.append((code[start:i], False))
            start = i + 1
    return stmts


def defined_symbols(code):
    """Names that a .c file defines without static: functions and variables."""
    names = set()
    lines = [l for l in code.split("\n") if not l.lstrip().startswith("#")]
    for stmt, has_body in top_level_statements("\n".join(lines)):
        s = " ".join(stmt.split())
        if not s or re.match(r"(static|extern|typedef)\b", s):
            continue
        if re.match(r"(struct|union|enum)\s+\w+\s*$", s):
            continue
        m = re.search(r"(\w+)\s*\(", s)
        if has_body and m and "=" not in s[: m.start()]:
            names.add(m.group(1))			# a function definition
        elif not has_body or "=" in s:
            # a variable: the last identifier before '=' or '[' or the end
            decl = re.split(r"[=\[]", s, 1)[0]
            ids = re.findall(r"[A-Za-z_]\w*", decl)
            if ids and ids[-1] not in C_KEYWORDS and "(" not in decl:
                names.add(ids[-1])
    return names


def main():
    files = sorted(f for f in os.listdir(SRC) if f.endswith((".c", ".h")))
    texts = {f: open(os.path.join(SRC, f), encoding="utf-8").read() for f in files}
    code = {f: strip(t) for f, t in texts.items()}

    includes = {f: sorted(set(re.findall(r'^\s*#\s*include\s+"([^"]+)"', texts[f], re.M)) & set(files))
                for f in files}

    cfiles = [f for f in files if f.endswith(".c")]
    defines = {f: defined_symbols(code[f]) for f in cfiles}
    owner = {}
    for f in cfiles:
        for name in defines[f]:
            owner.setdefault(name, f)
    calls = {}
    for f in cfiles:
        used = set(re.findall(r"[A-Za-z_]\w*", code[f])) - defines[f]
        calls[f] = sorted({owner[u] for u in used if u in owner and owner[u] != f})

    passed = failed = 0
    for name, graph in (("includes", includes), ("calls", calls)):
        components = strongly_connected(graph)
        print(f"# {name}")
        for node in layered(graph):
            print(f"{node:18} -> {' '.join(graph[node]) or '(nothing)'}")
        for comp in components:
            print(f"CYCLE in {name}: {' -> '.join(path_in(graph, comp))}"
                  f" (depending on one another: {' '.join(comp)})")
        failed += len(components)
        passed += 0 if components else 1
    print("deps: no cycles" if failed == 0 else f"deps: {failed} cycle(s)")
    print(f"check-deps: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


def strongly_connected(graph):
    """The strongly connected components of more than one node (Tarjan), sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def path_in(graph, comp):
    """A cycle through the first node of a strongly connected component."""
    members = set(comp)
    start = comp[0]
    prev = {start: None}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in graph.get(v, []):
            if w == start:
                path = [v]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return list(reversed(path)) + [start]
            if w in members and w not in prev:
                prev[w] = v
                queue.append(w)
    return comp


def layered(graph):
    """Nodes, each after everything it depends on (as far as there are no cycles)."""
    done, order = set(), []

    def place(v, seen):
        if v in done or v in seen:
            return
        seen.add(v)
        for w in graph.get(v, []):
            place(w, seen)
        done.add(v)
        order.append(v)

    for v in sorted(graph):
        place(v, set())
    return order


if __name__ == "__main__":
    sys.exit(main())
