#!/usr/bin/env python3
"""json_get.py: fields of a JSON document, by path, one line each.

    json_get.py PATH... < JSON

The one reader of JSON for the lab's shell (lab_json in lab/lab.sh, and
through it mt_json, mt_status and mt_ha in lab/mailtwin.sh, and the
benchmarks). A PATH is names joined by dots, a number indexing a list
("ha.epoch_confirmed", "nodes.1.role"); "A|B" is the first of A and B
that exists ("replication.state|state"). For each PATH one line, as
Python's print shows the value: strings bare, True/False, None, numbers as
JSON gave them, objects and lists as Python literals (ast.literal_eval
reads them back); an empty line where the path leads nowhere. Exit status
1, with nothing printed, when the input is not JSON (a daemon that did not
answer); 0 otherwise.

Started for every read, sometimes in a poll loop: it imports json and sys
alone (run it with python3 -S: about 15 ms).
"""
import json
import sys

_MISSING = object()


def get(doc, path):
    """The value at PATH in DOC ("A|B": the first of A and B there), or _MISSING."""
    for alt in path.split("|"):
        v = doc
        for name in alt.split(".") if alt else []:
            if isinstance(v, dict) and name in v:
                v = v[name]
            elif isinstance(v, list) and name.isdigit() and int(name) < len(v):
                v = v[int(name)]
            else:
                v = _MISSING
                break
        if v is not _MISSING:
            return v
    return _MISSING


def show(v):
    """One value as print() shows it; "" for a missing one."""
    return "" if v is _MISSING else str(v)


def main(argv):
    try:
        doc = json.load(sys.stdin)
    except ValueError:
        return 1
    sys.stdout.write("".join(show(get(doc, p)) + "\n" for p in argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
