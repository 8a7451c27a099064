"""The few file operations the frame store makes, in one place.

Every change the ring buffer makes to flash goes through write(), rename()
and remove(), so that a test can cut the power between any two of them (or
in the middle of a write) and check that the store still comes back whole.
The directory lives on the board's littlefs partition; the simulated board
mounts a real littlefs image too (firmware/sim/blockdev.py), so what a file
costs, ENOSPC and a cut between two block writes are littlefs's own.
"""
import os


class Flash:
    def __init__(self, root):
        self.root = root
        at = 0
        while at >= 0:  # each directory down to root ("/data", then "/data/ring")
            at = root.find("/", at + 1)
            try:
                os.mkdir(root[:at] if at > 0 else root)
            except OSError:
                pass  # exists already

    def path(self, name):
        return self.root + "/" + name

    def write(self, name, data):
        """Write a whole file; a power cut may leave it torn, never a neighbour."""
        f = open(self.path(name), "wb")
        try:
            f.write(data)
        finally:
            f.close()

    def rename(self, old, new):
        # LittleFS and POSIX both replace `new` atomically: the commit step.
        os.rename(self.path(old), self.path(new))

    def remove(self, name):
        try:
            os.remove(self.path(name))
        except OSError:
            pass

    def read(self, name):
        """The file's bytes, or None when it is not there."""
        try:
            f = open(self.path(name), "rb")
        except OSError:
            return None
        try:
            return f.read()
        finally:
            f.close()

    def names(self):
        """Iterator over the file names (ilistdir: no list of the whole directory)."""
        for entry in os.ilistdir(self.root):
            yield entry[0]

