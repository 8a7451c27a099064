"""The status line of `huaico run` on a terminal, kept apart from log lines.

On a terminal the status line is redrawn in place ("\\r", erase line) so it
does not scroll; a log line written while it is shown would start right
after it and glue the two together. So log records on that terminal go
through LogHandler, which erases the status line, writes the record on a
line of its own, and draws the status line again below it. One lock orders
the writes of the writer, dispatcher and status threads.
"""
import logging
import threading

_ERASE = "\r\x1b[K"


class StatusLine:
    """The one status line of a terminal stream."""

    def __init__(self, stream):
        self.stream = stream
        self.lock = threading.RLock()
        self.text = ""

    def show(self, text):
        with self.lock:
            self.text = text
            self.stream.write(_ERASE + text)
            self.stream.flush()

    def end(self):
        """Leave the last status on its own line (at shutdown)."""
        with self.lock:
            if self.text:
                self.stream.write("\n")
                self.stream.flush()
            self.text = ""


_lines = {}
_registry_lock = threading.Lock()


def status_line(stream):
    """The StatusLine of `stream`, shared by the service and the log handler."""
    with _registry_lock:
        if id(stream) not in _lines or _lines[id(stream)].stream is not stream:
            _lines[id(stream)] = StatusLine(stream)
        return _lines[id(stream)]


class LogHandler(logging.StreamHandler):
    """A StreamHandler that never writes into the status line."""

    def emit(self, record):
        if not self.stream.isatty():
            logging.StreamHandler.emit(self, record)
            return
        line = status_line(self.stream)
        with line.lock:
            if line.text:
                self.stream.write(_ERASE)
            logging.StreamHandler.emit(self, record)
            if line.text:
                self.stream.write(line.text)
                self.stream.flush()
