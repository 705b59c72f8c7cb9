"""Builds the C++ parts (csrc/): the renderer as densehead.render._render and the dense face
shape as densehead.engine._face_basis; everything else is in pyproject.toml."""
from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

FLAGS = ["-O3", "-fno-math-errno", "-fno-trapping-math"]
extensions = [
    Pybind11Extension("densehead.render._render", ["csrc/bindings.cpp", "csrc/render_core.cpp"],
                      cxx_std=17, extra_compile_args=FLAGS),
    Pybind11Extension("densehead.engine._face_basis", ["csrc/face_basis.cpp"],
                      cxx_std=17, extra_compile_args=FLAGS),
]

setup(ext_modules=extensions, cmdclass={"build_ext": build_ext})
