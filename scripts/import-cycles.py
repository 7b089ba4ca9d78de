#!/usr/bin/env python3
"""Import circles between sibling modules of each crate of the workspace.

    python3 scripts/import-cycles.py [CRATE_DIR ...]

For every crate under crates/ (or the crate directories given), reads src/**/*.rs (not
src/bin), strips comments, strings and char literals, and resolves every `crate::`,
`super::` and `self::` path (in `use` trees, braces expanded, and inline in code) to the
module it names; inline `mod name { ... }` blocks (such as `mod tests`) count as modules of
their own. A use of module B from inside module A is an edge between the two children of
their closest common ancestor (siblings). Prints each pair of siblings that use each other,
with one place each way, and each larger circle of siblings (A -> B -> C -> A). Exits 1 when
it found any, in production code or through test code only (a test module that imports a
sibling which imports its parent is a circle too), so it can guard a review. A measure
(issue 10: no import circles), not a gate.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

TOKEN = re.compile(
    r'(?P<string>b?r(?P<hashes>#*)"(?:.|\n)*?"(?P=hashes)|b?"(?:\\[\s\S]|[^"\\])*")'
    r"|(?P<char>b?'(?:\\.|\\u\{[0-9a-fA-F]+\}|[^'\\\n])')"
    r'|(?P<line_comment>//[^\n]*)'
    r'|(?P<block_comment>/\*)'
)
PATH = re.compile(r'\b(crate|super|self)((?:\s*::\s*(?:\w+|\{))+)')
TEST_MOD = re.compile(r'#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)')
CODE = re.compile(
    r'(?P<mod>\bmod\s+(?P<mod_name>\w+)\s*\{)'
    r'|(?P<use>\buse\s+(?P<tree>[^;]*);)'
    r'|(?P<open>\{)|(?P<close>\})'
    r'|(?P<path>\b(?:crate|super|self)(?:\s*::\s*\w+)+)'
)


def strip(text):
    """The text with comments, strings and char literals blanked (newlines kept)."""
    out, i = [], 0
    while True:
        m = TOKEN.search(text, i)
        if not m:
            out.append(text[i:])
            return ''.join(out)
        out.append(text[i:m.start()])
        if m.group('block_comment'):
            depth, j = 1, m.end()
            while depth and j < len(text):
                if text.startswith('/*', j):
                    depth, j = depth + 1, j + 2
                elif text.startswith('*/', j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            end = j
        else:
            end = m.end()
        blank = '""' if m.group('string') else ("' '" if m.group('char') else '')
        out.append(blank + '\n' * text.count('\n', m.start(), end))
        i = end


def expand_use_tree(tree):
    """The paths a `use` tree names (aliases already cut off): `a::{b, c::{d, e}}` gives
    a::b, a::c::d and a::c::e."""
    tree = re.sub(r'\s+', '', tree)

    def parse(s, prefix):
        paths, depth, start = [], 0, 0
        parts = []
        for k, ch in enumerate(s):
            if ch == '{':
                depth += 1
            elif ch == '}':
                depth -= 1
            elif ch == ',' and depth == 0:
                parts.append(s[start:k])
                start = k + 1
        parts.append(s[start:])
        for part in filter(None, parts):
            brace = part.find('{')
            if brace >= 0:
                head = part[:brace].rstrip(':')
                inner = part[brace + 1:part.rfind('}')]
                paths += parse(inner, prefix + [p for p in head.split('::') if p])
            else:
                paths.append(prefix + [p for p in part.split('::') if p])
        return paths

    return parse(tree, [])


def resolve(segments, module, modules):
    """The module (a tuple) that a `crate::`/`super::`/`self::` path names from `module`:
    the longest prefix of the path that is a known module; None for other paths."""
    if not segments or segments[0] not in ('crate', 'super', 'self'):
        return None
    if segments[0] == 'crate':
        base, rest = (), segments[1:]
    else:
        base, rest = module, segments
        while rest and rest[0] in ('super', 'self'):
            if rest[0] == 'super':
                if not base:
                    return None
                base = base[:-1]
            rest = rest[1:]
    target = base
    for seg in rest:
        if target + (seg,) in modules:
            target = target + (seg,)
        else:
            break
    return target


def file_module(src, path):
    rel = path.relative_to(src).with_suffix('')
    parts = list(rel.parts)
    if parts[-1] == 'mod' or (len(parts) == 1 and parts[0] in ('lib', 'main')):
        parts = parts[:-1]
    return tuple(parts)


def uses_in_file(text, module):
    """(inner module, named path, line) for each path in `text`, whose module is `module`,
    and the modules the text declares under `#[cfg(test)]` (by their name under `module`;
    inline test modules inside inline modules are rare enough to leave out)."""
    code = strip(text)
    test_modules = {module + (name,) for name in TEST_MOD.findall(code)}
    stack = []  # (module path, brace depth at which its block closes)
    depth = 0
    current = module
    found = []
    for m in CODE.finditer(code):
        line = code.count('\n', 0, m.start()) + 1
        if m.group('mod'):
            depth += 1
            stack.append((current, depth))
            current = current + (m.group('mod_name'),)
        elif m.group('open'):
            depth += 1
        elif m.group('close'):
            if stack and stack[-1][1] == depth:
                current = stack.pop()[0]
            depth -= 1
        elif m.group('use'):
            tree = m.group('tree')
            tree = re.sub(r'\bas\s+\w+', '', tree)
            for segments in expand_use_tree(tree):
                found.append((current, segments, line))
        elif m.group('path'):
            segments = [s.strip() for s in m.group('path').split('::')]
            found.append((current, segments, line))
    return found, test_modules


def crate_cycles(crate_dir):
    src = crate_dir / 'src'
    files = [p for p in sorted(src.rglob('*.rs')) if 'bin' not in p.relative_to(src).parts[:1]]
    modules = {file_module(src, p) for p in files}
    parsed, test_modules = [], set()
    for p in files:
        module = file_module(src, p)
        found, tests = uses_in_file(p.read_text(), module)
        test_modules |= tests
        for inner, segments, line in found:
            # Inline modules are modules too.
            for k in range(len(module), len(inner) + 1):
                modules.add(inner[:k])
            parsed.append((p, inner, segments, line))
    edges = {}  # (parent, a, b) -> [first place, whether every use is from test code]
    for p, inner, segments, line in parsed:
        target = resolve(segments, inner, modules)
        if target is None:
            continue
        k = 0
        while k < min(len(inner), len(target)) and inner[k] == target[k]:
            k += 1
        if k == len(inner) or k == len(target):
            continue  # an ancestor or descendant, not a sibling
        key = (inner[:k], inner[k], target[k])
        place = f'{p.relative_to(ROOT)}:{line} ({"::".join(segments)})'
        in_test = any(inner[:j] in test_modules for j in range(1, len(inner) + 1))
        edge = edges.setdefault(key, [place, True])
        if edge[1] and not in_test:
            edge[:] = [place, False]
    return edges


def circles(edges):
    """Mutual pairs, then strongly connected groups of three or more siblings."""
    pairs, groups = [], []
    by_parent = {}
    for (parent, a, b) in edges:
        by_parent.setdefault(parent, {}).setdefault(a, set()).add(b)
    for parent, graph in sorted(by_parent.items()):
        for a in sorted(graph):
            for b in sorted(graph[a]):
                if a < b and a in graph.get(b, ()):
                    pairs.append((parent, a, b))
        for group in strongly_connected(graph):
            if len(group) > 2:
                groups.append((parent, group))
    return pairs, groups


def strongly_connected(graph):
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    nodes = sorted(set(graph) | {b for bs in graph.values() for b in bs})

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            out.append(sorted(group))

    for v in nodes:
        if v not in index:
            visit(v)
    return out


def name(parent, child):
    return '::'.join(('crate',) + parent + (child,))


def main():
    dirs = [pathlib.Path(d).resolve() for d in sys.argv[1:]] or sorted(
        d for d in (ROOT / 'crates').iterdir() if (d / 'src').is_dir())
    total = test_only = 0
    for crate_dir in dirs:
        edges = crate_cycles(crate_dir)
        pairs, groups = circles(edges)
        for parent, a, b in pairs:
            there, back = edges[(parent, a, b)], edges[(parent, b, a)]
            only_tests = there[1] or back[1]
            total += not only_tests
            test_only += only_tests
            note = ' (through test code only)' if only_tests else ''
            print(f'{crate_dir.name}: {name(parent, a)} <-> {name(parent, b)}{note}')
            print(f'    {there[0]}')
            print(f'    {back[0]}')
        for parent, group in groups:
            total += 1
            print(f'{crate_dir.name}: circle of {len(group)}: '
                  + ' -> '.join(name(parent, g) for g in group))
    print(f'{total} import circle(s) in production code, {test_only} through test code only')
    return 1 if total or test_only else 0


if __name__ == '__main__':
    sys.exit(main())
