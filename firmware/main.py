"""The board's /main.py (copied there by deployment): start the firmware at power-on."""
from firmware.app import main

main()
