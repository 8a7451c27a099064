"""MQTT at the gateway: the one broker connection (a small wrapper around
paho), the SenML readings feed for city platforms, and Home Assistant
discovery.
"""
