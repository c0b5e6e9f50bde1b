"""Packs the pjsua2 module that scripts/build-pjsip built into one self-contained wheel.

scripts/build-pjsip stages ``pjsua2/`` next to this file: ``__init__.py`` (SWIG's
``pjsua2.py``), ``_pjsua2.<abi>.so`` (RUNPATH ``$ORIGIN``) and pjproject's shared
libraries (``libpj*.so.2``), then runs ``pip wheel`` here. Nothing is compiled in this
step; the wheel is platform-specific because of the shared objects it carries.
"""

import os

from setuptools import setup
from setuptools.dist import Distribution


class BinaryDistribution(Distribution):
    """Shared objects inside: tag the wheel for this Python ABI and platform."""

    def has_ext_modules(self) -> bool:
        return True


setup(
    name="sipmuc-pjsua2",
    version=os.environ["SIPMUC_PJSUA2_VERSION"],
    description="pjsua2 Python module of the sipmuc bridge's own pjproject build",
    url="https://github.com/pjsip/pjproject",
    license="GPL-2.0-or-later",
    packages=["pjsua2"],
    package_data={"pjsua2": ["*.so", "*.so.*", "BUILD-INFO.txt", "LAYOUT.json"]},
    include_package_data=False,
    zip_safe=False,
    python_requires=os.environ.get("SIPMUC_PJSUA2_REQUIRES_PYTHON", ">=3.11"),
    distclass=BinaryDistribution,
)
