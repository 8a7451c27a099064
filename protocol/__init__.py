"""huaico's wire format: pure Python that runs unchanged on MicroPython and CPython."""
