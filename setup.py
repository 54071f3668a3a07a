"""Builds the data path's compiled loop (supervisor/transport/_runscan.pyx, issue 21).

Everything else is in setup.cfg. The extension is optional: when it cannot be built
(no compiler), the install goes on and agentd runs the pure-Python loop
(supervisor/transport/runscan.py), so a failed build is a warning, not an error.
"""

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """build_ext that leaves the extension out instead of failing the install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            print(f"agentd: compiled data path not built ({exc}); using pure Python")

    def build_extension(self, ext) -> None:  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:
            print(f"agentd: {ext.name} not built ({exc}); using pure Python")


def _extensions() -> list:  # type: ignore[type-arg]
    try:
        from Cython.Build import cythonize
    except ImportError:
        return []
    return cythonize(["supervisor/transport/_runscan.pyx"], language_level=3, quiet=True)


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
