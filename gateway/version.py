"""What huaico is installed, for `huaico --version`, backups and the log."""
import os
import platform
from importlib import metadata


def installed():
    """The installed distribution's version, or a plain word in a checkout
    that was never installed."""
    try:
        return metadata.version("huaico")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def describe():
    """The version with what an operator reporting a problem is asked next:
    Python, the frame decoder in use, and where huaico is installed."""
    from huaico.ingest import decoder

    return "%s (Python %s, %s frame decoder, %s)" % (
        installed(), platform.python_version(),
        "compiled" if decoder.IS_COMPILED else "pure Python",
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
