"""The board's /main.py (copied there by deployment): start the firmware at power-on."""
from firmware.boot import main

main()
