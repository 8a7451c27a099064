"""The board's /main.py (copied there by deployment): boot, then run the main loop for ever.

firmware.boot unloads itself once the App is built; dropping `start` here
too lets the collector take its code (~6 KB) before the loop runs.
"""
from firmware.boot import start

app = start()
del start
if app is not None:
    app.run()
