#!/usr/bin/env python3
"""The modules of src/ must not call into each other in a cycle.

Reads the static library's symbol tables (nm): a module uses another when it
references a symbol the other defines (a function, or a table of functions
such as a storage driver). Fails, naming the modules, when the graph of those
uses has a cycle: two modules that call into each other, directly or through
others. Usage: check_callgraph.py LIBRARY.a
"""
import collections
import os
import subprocess
import sys


def module_of(member):
    return os.path.basename(member).split('.')[0]


def graph_of(library):
    out = subprocess.run(['nm', '-A', library], capture_output=True, text=True, check=True).stdout
    defined, used = {}, collections.defaultdict(set)
    for line in out.splitlines():
        head, _, sym = line.rpartition(':')
        member = head.split(':')[-1]
        fields = sym.split()
        if len(fields) == 3 and fields[1] in 'TDRBC':
            defined[fields[2]] = module_of(member)
        elif len(fields) == 2 and fields[0] == 'U':
            used[module_of(member)].add(fields[1])
    graph = collections.defaultdict(set)
    for mod, syms in used.items():
        for s in syms:
            if s in defined and defined[s] != mod:
                graph[mod].add(defined[s])
    return graph


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def main():
    graph = graph_of(sys.argv[1])
    if len(graph) < 10:
        print('check_callgraph: too few modules found in %s' % sys.argv[1])
        return 1
    bad = cycles(graph)
    for comp in bad:
        edges = ['%s -> %s' % (a, b) for a in comp for b in sorted(graph[a]) if b in comp]
        print('cycle among modules %s: %s' % (', '.join(comp), '; '.join(edges)))
    if not bad:
        print('no cycle among %d modules' % len(graph))
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
