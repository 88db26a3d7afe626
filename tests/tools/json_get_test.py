#!/usr/bin/env python3
"""json_get_test.py: lab/json_get.py, the lab's one reader of JSON (mt_json,
mt_status, mt_ha, the benchmarks), finds what a path names and nothing else,
and prints it as mt_status always has (True, not true).

Runs with plain python3 (unittest); ctest runs it as tools.json_get.
"""

import ast
import os
import subprocess
import sys
import unittest

LAB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lab")
sys.path.insert(0, LAB)
import json_get  # noqa: E402

# The shape of `mailtwin status --json` (keys sorted, as nlohmann writes
# them): "messages", "refused" and "state" stand in more than one section.
STATUS = """{"cluster":"lab","cpu_ms":12.5,"epoch":2,
 "gate":{"messages":7,"refused":0,"hold_p50_ms":0.25},
 "ha":{"epoch_confirmed":true,"handover_pending":0,"handover_received":{"refused":3},
       "vip":null,"decision":"stay: primary"},
 "nodes":[{"role":"primary","self":true},{"role":"standby","self":false}],
 "replication":{"messages":9,"state":"live","watcher":{"overflows":0}},
 "role":"primary"}"""


def run(*paths, stdin=STATUS):
    p = subprocess.run([sys.executable, "-S", os.path.join(LAB, "json_get.py"), *paths],
                       input=stdin, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


class JsonGetTest(unittest.TestCase):
    def test_a_path_names_one_section(self):
        rc, out, _ = run("gate.messages", "replication.messages", "ha.handover_received.refused",
                         "gate.refused")
        self.assertEqual(rc, 0)
        self.assertEqual(out, "7\n9\n3\n0\n")

    def test_values_print_as_python_does(self):
        rc, out, _ = run("ha.epoch_confirmed", "ha.vip", "cpu_ms", "gate.hold_p50_ms",
                         "ha.decision", "role")
        self.assertEqual(out.split("\n")[:-1], ["True", "None", "12.5", "0.25", "stay: primary", "primary"])

    def test_objects_read_back_with_literal_eval(self):
        _, out, _ = run("replication.watcher")
        self.assertEqual(ast.literal_eval(out), {"overflows": 0})

    def test_list_index(self):
        _, out, _ = run("nodes.1.role", "nodes.0.self", "nodes.2.role", "nodes.x")
        self.assertEqual(out, "standby\nTrue\n\n\n")

    def test_alternatives_first_that_exists(self):
        # mt_status HOST KEY: replication.KEY, else KEY at the top.
        _, out, _ = run("replication.state|state", "replication.epoch|epoch", "replication.nope|nope")
        self.assertEqual(out, "live\n2\n\n")

    def test_missing_is_an_empty_line_in_its_place(self):
        rc, out, _ = run("nope", "gate.messages.deeper", "epoch")
        self.assertEqual(rc, 0)
        self.assertEqual(out, "\n\n2\n")

    def test_no_json_fails_silently(self):
        for text in ("", "mailtwin: cannot connect\n", "{"):
            rc, out, err = run("epoch", stdin=text)
            self.assertEqual((rc, out, err), (1, "", ""), text)

    def test_get_in_process(self):
        doc = {"a": {"b": [{"c": False}]}}
        self.assertIs(json_get.get(doc, "a.b.0.c"), False)
        self.assertIs(json_get.get(doc, "a.c"), json_get._MISSING)
        self.assertEqual(json_get.show(json_get.get(doc, "a.b.0.c")), "False")
        self.assertEqual(json_get.show(json_get._MISSING), "")


if __name__ == "__main__":
    unittest.main()
