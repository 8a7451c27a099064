"""The SIM800-class modem emulator for tests: it ships as gateway/sms/modem_emulator.py
(`huaico demo` uses it too); these names stay importable from here."""
from huaico.sms.modem_emulator import (SMSC, ModemEmulator, PduInvalid, _recipient,  # noqa: F401
                                    check_submit, decode_submit, deliver_pdu,
                                    status_report_pdu)
