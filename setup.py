"""Build script: everything declarative lives in pyproject.toml; this file only adds the
C++ extension ``tgan._C`` (the rollout KV cache) when csrc/ holds sources.

Environment switch (listed in the README):
  TGAN_SKIP_EXT=1    build no extension at all
"""
import glob
import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _packages():
    pkgs = [p for p in find_packages(include=["tgan", "tgan.*"])]
    return pkgs


def _extensions():
    if os.environ.get("TGAN_SKIP_EXT", "0") == "1":
        print("tgan setup: TGAN_SKIP_EXT=1, building no C++ extension")
        return [], {}
    cpp = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
    if not cpp:
        print("tgan setup: csrc/ has no sources, building no C++ extension")
        return [], {}
    from torch.utils.cpp_extension import BuildExtension, CppExtension

    # One build for every machine: the cache's work is ATen calls (narrow, copy_, autograd
    # bookkeeping) that dispatch to CUDA for CUDA tensors, so no source of it is device code and
    # a CUDA variant would compile the same object with nvcc for nothing.
    print(f"tgan setup: building tgan._C ({len(cpp)} C++ sources; CPU and CUDA tensors alike)")
    ext = CppExtension("tgan._C", cpp, extra_compile_args={"cxx": ["-O3", "-std=c++17"]})
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = _extensions()
setup(
    packages=_packages(),
    package_data={"tgan": ["models/*/*"]},  # the bundled model folders (tgan.load("bach-tiny"))
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
