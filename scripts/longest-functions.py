#!/usr/bin/env python3
"""Lists the longest C functions of src/ (or of the directory given).

A function is counted from its return type (the line before its name,
which PostgreSQL's style puts at the start of a line) to its closing brace,
also at the start of a line.  Usage: scripts/longest-functions.py [DIR] [N]
"""
import glob
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), '..', 'src')
count = int(sys.argv[2]) if len(sys.argv) > 2 else 10
found = []
for path in sorted(glob.glob(os.path.join(root, '*.c'))):
    with open(path) as f:
        lines = f.read().split('\n')
    i = 1
    while i < len(lines):
        m = re.match(r'^([A-Za-z_]\w*)\(', lines[i])
        if m:
            j = i
            while j < len(lines) and lines[j] != '{' and not lines[j].endswith(';'):
                j += 1
            if j < len(lines) and lines[j] == '{':
                k = j
                while k < len(lines) and lines[k] != '}':
                    k += 1
                found.append((k - i + 2, m.group(1), os.path.basename(path)))
                i = k
        i += 1
for n, name, f in sorted(found, reverse=True)[:count]:
    print(f'{n:4d} {name} ({f})')
