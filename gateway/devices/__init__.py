"""Devices and their boards: provisioning ids and keys, a station's sensors
edited from the CLI, and flashing firmware and site config onto a board.
"""
