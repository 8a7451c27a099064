"""Frames coming in: the readers (serial, UDP, MQTT), the frame decoder that
picks the compiled or the pure implementation, and each device's replay
window.

Nothing here writes to the database: readers hand frames to the single
writer in `huaico.store`.
"""
