#!/usr/bin/env python3
"""Lengths of the production functions of the workspace at a git revision, longest first.

    python3 scripts/function-lengths.py [REV] [N]

Counts a function from its `fn` line to the closing brace at the same indentation, in
crates/**/*.rs, leaving out tests (files under tests/, *tests.rs, the store's conformance
suite, and everything after a `#[cfg(test)]` line) and trait method declarations without a
body. Prints how many functions are 100+ and 60+ lines long and the N longest (default 20).
A measure for reviews (issue 10: functions short enough to read at once), not a gate.
"""
import re
import subprocess
import sys

FN = re.compile(r'^(\s*)(pub(\([a-z]+\))? )?(const )?(async )?(unsafe )?fn (\w+)')


def git(*args):
    return subprocess.run(['git', *args], capture_output=True, text=True, check=True).stdout


def lengths(rev):
    out = []
    for path in git('ls-tree', '-r', '--name-only', rev, 'crates').split():
        if (not path.endswith('.rs') or '/tests/' in path or path.endswith('tests.rs')
                or 'conformance' in path):
            continue
        src = git('show', f'{rev}:{path}').split('\n')
        for i, line in enumerate(src):
            if re.match(r'^\s*#\[cfg\(test\)\]', line):
                break
            m = FN.match(line)
            if not m:
                continue
            k = i
            while k < len(src) and '{' not in src[k] and not src[k].rstrip().endswith(';'):
                k += 1
            if k < len(src) and '{' not in src[k]:
                continue  # a declaration: no body
            closing = m.group(1) + '}'
            for j in range(i + 1, len(src)):
                if src[j] == closing:
                    out.append((j - i + 1, path, m.group(7)))
                    break
    return sorted(out, reverse=True)


def main():
    rev = sys.argv[1] if len(sys.argv) > 1 else 'HEAD'
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    found = lengths(rev)
    print(f'{rev}: {len(found)} functions, {sum(n >= 100 for n, _, _ in found)} of 100+ lines, '
          f'{sum(n >= 60 for n, _, _ in found)} of 60+')
    for n, path, name in found[:top]:
        print(f'{n:5}  {path}  {name}')


if __name__ == '__main__':
    main()
