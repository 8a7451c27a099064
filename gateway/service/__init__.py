"""`huaico run` as a long-running service: the process that wires readers,
writer and dispatcher, what wraps it when left running (the data-directory
lock, sd_notify, housekeeping, metrics), its terminal status line, and the
systemd unit that `huaico service install` writes.
"""
