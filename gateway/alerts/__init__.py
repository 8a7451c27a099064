"""Alerts from raised to delivered: the lifecycle that writes alerts and their
messages into the outbox, the dispatcher that sends the outbox, message
templates per language (templates/*.toml), CAP 1.2 output, and the
acknowledgements people send back.
"""
