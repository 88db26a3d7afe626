#!/usr/bin/env python3
"""gate_trial_test.py: lab/gate_trial.py counts a trial as protected only for
a real queue ID found in a real mirror directory.

Runs with plain python3 (unittest), on a temporary directory shaped like
the standby's mirror; ctest runs it as tools.gate_trial.
"""

import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lab"))
import gate_trial  # noqa: E402

ID = "4jbrwT63sJz1bYJB"


class GateTrialTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.mirror = self.tmp.name
        for q in gate_trial.QUEUES:
            os.mkdir(os.path.join(self.mirror, q))
        os.makedirs(os.path.join(self.mirror, "deferred", "B"))

    def tearDown(self):
        self.tmp.cleanup()

    def put(self, rel):
        open(os.path.join(self.mirror, rel), "w").close()

    def test_a_reply_without_queue_id_has_none(self):
        self.assertEqual(gate_trial.queue_id("2.0.0 Ok"), "")
        self.assertEqual(gate_trial.queue_id("2.0.0 Ok: queued as "), "")
        self.assertEqual(gate_trial.queue_id("2.0.0 Ok: queued as ../.."), "")
        self.assertEqual(gate_trial.queue_id(f"2.0.0 Ok: queued as {ID}"), ID)

    def test_an_empty_id_is_never_in_the_mirror(self):
        # os.path.join(mirror/incoming, "") is the directory itself: it exists.
        self.put(f"incoming/{ID}")
        self.assertFalse(gate_trial.in_mirror(self.mirror, ""))
        self.assertFalse(gate_trial.in_mirror(self.mirror, None))

    def test_a_queue_directory_name_is_not_a_queue_id(self):
        self.assertFalse(gate_trial.in_mirror(self.mirror, "B"))
        self.assertFalse(gate_trial.in_mirror(self.mirror, "."))

    def test_finds_flat_and_hashed_files(self):
        self.assertFalse(gate_trial.in_mirror(self.mirror, ID))
        self.put(f"deferred/B/{ID}")
        self.assertTrue(gate_trial.in_mirror(self.mirror, ID))
        self.assertFalse(gate_trial.in_mirror(self.mirror, ID, ("incoming", "hold")))

    def test_hold_does_not_count_when_excluded(self):
        self.put(f"hold/{ID}")
        self.assertTrue(gate_trial.in_mirror(self.mirror, ID))
        queues = [q for q in gate_trial.QUEUES if q != "hold"]
        self.assertFalse(gate_trial.in_mirror(self.mirror, ID, queues))


if __name__ == "__main__":
    unittest.main(verbosity=1)
