"""huaico's gateway and hub, installed as `huaico` (source folder gateway/).

One package per concern; README.md's "Which package holds what" maps them.
The wire format is `huaico.protocol` (source folder protocol/, the same files
the boards run as their top-level `protocol`).
"""
