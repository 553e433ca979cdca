"""Build script: everything declarative lives in pyproject.toml; this file only adds the
C++ extension ``tgan._C`` (the rollout KV cache) when csrc/ holds sources.

Environment switches (all listed in the README):
  TGAN_SKIP_EXT=1    build no extension at all
  TGAN_FORCE_CUDA=1  build the CUDA variant even when no GPU is visible (e.g. in a container build)
"""
import glob
import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _packages():
    pkgs = [p for p in find_packages(include=["tgan", "tgan.*"])]
    return pkgs + ["tgan.kernels"]


def _extensions():
    if os.environ.get("TGAN_SKIP_EXT", "0") == "1":
        print("tgan setup: TGAN_SKIP_EXT=1, building no C++ extension")
        return [], {}
    cpp = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
    if not cpp:
        print("tgan setup: csrc/ has no sources, building no C++ extension")
        return [], {}
    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    cu = sorted(glob.glob(os.path.join("csrc", "*.cu")))
    use_cuda = os.environ.get("TGAN_FORCE_CUDA", "0") == "1" or (
        torch.cuda.is_available() and torch.version.cuda is not None
    )
    cxx = ["-O3", "-std=c++17"]
    if use_cuda and cu:
        print(f"tgan setup: building tgan._C with CUDA ({len(cpp)} C++ + {len(cu)} CUDA sources)")
        ext = CUDAExtension(
            "tgan._C", cpp + cu,
            define_macros=[("TGAN_WITH_CUDA", None)],
            extra_compile_args={"cxx": cxx, "nvcc": ["-O3", "-std=c++17"]},
        )
    else:
        print(f"tgan setup: building tgan._C for CPU only ({len(cpp)} C++ sources)")
        ext = CppExtension("tgan._C", cpp, extra_compile_args={"cxx": cxx})
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = _extensions()
setup(
    packages=_packages(),
    package_dir={"tgan": "tgan", "tgan.kernels": "kernels"},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
