"""The firmware's epoch (SPEC.md 1.3) under the real MicroPython unix port: drawn
once when the board's store is new and kept across boots, so a re-flash (a new
store) draws another; a store made before epochs keeps sending version 1 (0),
so the frames already in its ring stay acceptable to the gateway."""
import json
import subprocess

from tests.fixtures.firmware import ROOT, micropython

SCRIPT = """
import sys
sys.path.insert(0, %r)
from firmware.app import _epoch
from firmware.flash import Flash
root = %r
drawn = []
for name in ("a", "b", "c"):
    store = Flash(root + "/" + name)
    drawn.append(_epoch(store, store.read("meta") is None))
kept = _epoch(Flash(root + "/a"), False)
old = Flash(root + "/v1")
old.write("meta", b"a version 1 ring's meta")
print(repr([drawn, kept, _epoch(old, old.read("meta") is None), sorted(Flash(root + "/a").names())]))
"""


def test_epoch_is_drawn_for_a_new_store_and_kept(tmp_path):
    script = tmp_path / "epoch.py"
    script.write_text(SCRIPT % (str(ROOT), str(tmp_path / "flash")))
    done = subprocess.run([micropython(), "-X", "heapsize=131072", str(script)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    drawn, kept, old, names = json.loads(done.stdout.strip().replace("'", '"'))
    assert all(1 <= epoch <= 255 for epoch in drawn)
    assert kept == drawn[0] and names == ["epoch"]
    assert old == 0
