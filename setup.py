"""Builds the C++ renderer (csrc/) as densehead.render._render; everything else is in pyproject.toml."""
from glob import glob

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

sources = sorted(glob("csrc/*.cpp"))
extensions = [
    Pybind11Extension(
        "densehead.render._render",
        sources,
        cxx_std=17,
        extra_compile_args=["-O3", "-fno-math-errno", "-fno-trapping-math"],
    )
] if sources else []

setup(ext_modules=extensions, cmdclass={"build_ext": build_ext})
