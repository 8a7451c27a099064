"""SMS: the interface every backend offers, the GSM modem driven with AT
commands in PDU mode, the gammu-smsd spool, PDU encoding, the GSM 7-bit
alphabet, and the modem emulator that tests and `huaico demo` drive.
"""
