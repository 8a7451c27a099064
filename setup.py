"""Builds the Cython frame decoder; HUAICO_BUILD_EXT=1 makes a failed build fatal.

The extension is the pure reference `protocol/frame.py` compiled as
`huaico.protocol._frame_c` with the types in `protocol/_frame_c.pxd` (the aiohttp
`reader_py`/`reader_c` pattern), so there is no second copy to drift.
"""
import os
import shutil

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

REQUIRED = os.environ.get("HUAICO_BUILD_EXT") == "1"
SOURCE = "protocol/frame.py"
COPY = "protocol/_frame_c.py"
MODULE = "huaico.protocol._frame_c"  # where frame.py's relative imports resolve
DIRECTIVES = {"language_level": "3", "boundscheck": False, "wraparound": False, "cdivision": True}


class OptionalBuildExt(build_ext):
    def run(self):
        try:
            super().run()
        except Exception as exc:
            self._fallback(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._fallback(exc)

    def _fallback(self, exc):
        if REQUIRED:
            raise
        print("huaico: Cython extension not built (%s); using the pure decoder" % exc)


def extensions():
    try:
        from Cython.Build import cythonize
    except ImportError:
        if REQUIRED:
            raise
        return []
    # Cython names the module after its file, so it compiles a copy of the
    # reference; the copy is removed again so that a failed C build can never
    # be imported as a silently pure `_frame_c`.
    shutil.copyfile(SOURCE, COPY)
    try:
        return cythonize([Extension(MODULE, [COPY])], compiler_directives=DIRECTIVES, quiet=True)
    except Exception as exc:
        if REQUIRED:
            raise
        print("huaico: Cython could not translate the decoder (%s); using the pure one" % exc)
        return []
    finally:
        os.remove(COPY)


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
