"""Chooses the frame decoder: the compiled reference when it loaded, else the pure one.

`HUAICO_PURE=1` forces the pure one (protocol/frame.py as it is), for
debugging and for machines where the C build is suspect; tests run both.
"""
import os

from huaico.protocol import frame as pure

compiled = None
if os.environ.get("HUAICO_PURE") != "1":
    try:
        from huaico.protocol import _frame_c as compiled
    except ImportError:
        compiled = None

impl = compiled if compiled is not None else pure
decode_frame = impl.decode_frame
IS_COMPILED = compiled is not None
