"""Build gncpu's extension: one Cython module linked with the C++ core.

Each ISA kernel (cpp/src/kernel_<isa>.cpp) is compiled on its own with that
ISA's flags; everything else is compiled for the baseline CPU, so one binary
runs anywhere and picks its kernel at runtime.

Switches (environment variables):
  GNCPU_NO_OPENMP=1       build without OpenMP (serial, still correct)
  GNCPU_NATIVE=1          add -march=native to every file (not portable)
  GNCPU_OPENMP_PREFIX=DIR where libomp lives (macOS: include/ and lib/)
  GNCPU_SANITIZE=1        AddressSanitizer + UndefinedBehaviorSanitizer build
                          (for .ci/sanitizers.sh; needs libasan preloaded)
  GNCPU_MANYLINUX=1       Linux/glibc wheels for old systems: libm's re-versioned
                          functions bound to their oldest versions and C++17's
                          aligned/sized new and delete defined in the extension
                          (cpp/manylinux/), so the extension needs nothing newer
                          than glibc 2.17 and GCC 4.8's libstdc++ (manylinux2014)
"""

import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent.resolve()
CPP_SRC = "cpp/src"
BASE_SOURCES = [
    "src/gncpu/_core.pyx",
    f"{CPP_SRC}/c_api.cpp",
    f"{CPP_SRC}/cpu_features.cpp",
    f"{CPP_SRC}/dispatch.cpp",
    f"{CPP_SRC}/runtime.cpp",
    f"{CPP_SRC}/kernel_scalar.cpp",
]
# Headers every object depends on (setuptools rebuilds and relinks on their change).
HEADERS = sorted(
    str(p.relative_to(HERE))
    for pattern in ("cpp/src/*.h", "cpp/src/*.inl", "cpp/src/kernels/*.inl", "cpp/include/gncpu/*.h",
                    "cpp/manylinux/*.h")
    for p in HERE.glob(pattern)
)


def load_isa_list():
    """cpp/isa_flags.py, which reads the ISA list from cpp/src/isa_list.h."""
    spec = importlib.util.spec_from_file_location("gncpu_isa_flags", HERE / "cpp" / "isa_flags.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ISA_LIST = load_isa_list()

VARIANT_SWITCHES = ("GNCPU_NO_OPENMP", "GNCPU_NATIVE", "GNCPU_SANITIZE", "GNCPU_MANYLINUX")
# The GNCPU_MANYLINUX symbol policy (see the docstring and cpp/manylinux/).
MANYLINUX_HEADER = "cpp/manylinux/symver.h"
MANYLINUX_SOURCE = "cpp/manylinux/cxx_compat.cpp"


def env_flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def manylinux_policy():
    """Whether this build applies the GNCPU_MANYLINUX symbol policy: asked for,
    and a glibc Linux target (musl and other systems have nothing to pin)."""
    if not env_flag("GNCPU_MANYLINUX"):
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        print("gncpu: GNCPU_MANYLINUX=1 applies to glibc Linux only; ignored", file=sys.stderr)
        return False
    if env_flag("GNCPU_SANITIZE"):
        # ASan intercepts operator new/delete; the policy's own would bypass it.
        raise SystemExit("gncpu: GNCPU_MANYLINUX=1 and GNCPU_SANITIZE=1 do not combine")
    return True


def target_machine():
    # cibuildwheel and cross builds say what they target through these.
    archflags = os.environ.get("ARCHFLAGS", "")
    if "arm64" in archflags:
        return "arm64"
    if "x86_64" in archflags:
        return "x86_64"
    return platform.machine().lower()


def compile_in_parallel(compile_sources, jobs):
    """A CCompiler.compile that compiles each source in its own process, up to
    `jobs` at a time: a fresh build is ~8 translation units of heavy templates
    (a serial one took ~40 s on 2 cores)."""
    def compile(sources, *args, **kwargs):
        if len(sources) <= 1 or jobs <= 1:
            return compile_sources(sources, *args, **kwargs)
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            objects = pool.map(lambda source: compile_sources([source], *args, **kwargs), sources)
            return [obj for per_source in objects for obj in per_source]
    return compile


def compiler_description(compiler):
    """The compiler's name and version, e.g. "g++ (Debian 12.2.0-14) 12.2.0"."""
    if compiler.compiler_type == "msvc":
        return "msvc"
    command = getattr(compiler, "compiler_so", None) or getattr(compiler, "compiler", None)
    try:
        version = subprocess.run([command[0], "--version"], capture_output=True, text=True,
                                 timeout=30).stdout.splitlines()[0]
    except (OSError, IndexError, TypeError, subprocess.SubprocessError):
        return compiler.compiler_type
    return version.replace('"', "'").strip() or compiler.compiler_type


class BuildExt(build_ext):
    """Compiles each ISA kernel with its own flags, then the extension."""

    def _compiler_accepts(self, flags, link_flags=(), source="int main(void){return 0;}\n"):
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "probe.cpp")
            with open(src, "w") as f:
                f.write(source)
            try:
                objects = self.compiler.compile([src], output_dir=tmp, extra_postargs=list(flags))
                self.compiler.link_executable(
                    objects, "probe", output_dir=tmp, extra_postargs=list(link_flags)
                )
            except Exception:
                return False
        return True

    def _openmp_flags(self, msvc):
        if env_flag("GNCPU_NO_OPENMP"):
            return [], []
        if msvc:
            candidates = [(["/openmp:llvm"], []), (["/openmp"], [])]
        elif sys.platform == "darwin":
            prefix = os.environ.get("GNCPU_OPENMP_PREFIX", "")
            inc = [f"-I{prefix}/include"] if prefix else []
            lib = [f"-L{prefix}/lib", f"-Wl,-rpath,{prefix}/lib"] if prefix else []
            candidates = [(["-Xpreprocessor", "-fopenmp"] + inc, lib + ["-lomp"]),
                          (["-fopenmp"] + inc, lib + ["-fopenmp"])]
        else:
            candidates = [(["-fopenmp"], ["-fopenmp"])]
        probe = "#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n"
        for compile_flags, link_flags in candidates:
            if self._compiler_accepts(compile_flags, link_flags, probe):
                return compile_flags, link_flags
        print("gncpu: OpenMP not found; building the serial library", file=sys.stderr)
        return [], []

    def build_extensions(self):
        # Each build variant (the GNCPU_* switches) gets its own object files,
        # and a change of variant rebuilds: setuptools would otherwise keep an
        # up-to-date-looking extension built with other switches.
        variant = "-".join(name.lower() for name in VARIANT_SWITCHES if env_flag(name)) or "default"
        self.build_temp = os.path.join(self.build_temp, variant)
        stamp = os.path.join(os.path.dirname(self.build_temp), "last-variant")
        previous = open(stamp).read() if os.path.exists(stamp) else None
        if previous != variant:
            self.force = True
        os.makedirs(os.path.dirname(stamp), exist_ok=True)
        with open(stamp, "w") as f:
            f.write(variant)
        msvc = self.compiler.compiler_type == "msvc"
        # Some setuptools versions compile C++ with the C compiler driver
        # ("gcc"), which is fine for gcc and clang alike.
        if msvc:
            common = ["/std:c++17", "/O2", "/W3", "/fp:precise", "/EHsc"]
        else:
            common = ["-std=c++17", "-O3", "-Wall", "-Wextra", "-Wno-unused-function",
                      # The same float rounding on every target: no silent FMA
                      # contraction of scalar code (kernels use FMA explicitly).
                      "-ffp-contract=off", "-fvisibility=hidden",
                      # Values unchanged (the code never relies on FP exceptions
                      # or their flags); it lets GCC vectorise loops with comparisons, such as the
                      # per-channel moments of channels-last blocks (1.2x on
                      # 2x1280x16x16).
                      "-fno-trapping-math"]
            if env_flag("GNCPU_NATIVE"):
                common.append("-march=native")
            if manylinux_policy():
                common += ["-include", MANYLINUX_HEADER]
            if env_flag("GNCPU_SANITIZE"):
                sanitize = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                            "-fno-omit-frame-pointer", "-g"]
                common += sanitize
        omp_compile, omp_link = self._openmp_flags(msvc)
        self.compiler.compile = compile_in_parallel(self.compiler.compile, os.cpu_count() or 1)
        self.gncpu_build_info = {
            "compiler": compiler_description(self.compiler),
            "flags": " ".join(common + omp_compile),
            "openmp": bool(omp_compile),
            "isas": ["scalar"],
        }

        for ext in self.extensions:
            kernels = []
            for name, gnu_flags, msvc_flags in ISA_LIST.isa_kernels(target_machine()):
                flags = msvc_flags if msvc else gnu_flags
                if flags == ["unsupported"]:
                    print(f"gncpu: no {name} kernel with this compiler", file=sys.stderr)
                    continue
                if flags and not self._compiler_accepts(flags):
                    print(f"gncpu: compiler lacks {flags}; skipping the {name} kernel",
                          file=sys.stderr)
                    continue
                kernels.append((name, flags))

            def compile_kernel(kernel, ext=ext):
                name, flags = kernel
                return self.compiler.compile(
                    [f"{CPP_SRC}/kernel_{name}.cpp"],
                    output_dir=self.build_temp,
                    include_dirs=ext.include_dirs,
                    extra_postargs=common + flags,
                    depends=HEADERS,
                )

            with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                isa_objects = [obj for objs in pool.map(compile_kernel, kernels) for obj in objs]
            if not msvc and manylinux_policy():
                isa_objects += self.compiler.compile(
                    [MANYLINUX_SOURCE], output_dir=self.build_temp,
                    extra_postargs=common, depends=[MANYLINUX_HEADER],
                )
            compiled = {name.upper() for name, _ in kernels}
            self.gncpu_build_info["isas"] += [name for name, _ in kernels]
            # dispatch.cpp needs every ISA of the list said yes or no.
            ext.define_macros += [(f"GNCPU_HAVE_{isa}", "1" if isa in compiled else "0")
                                  for isa in ISA_LIST.all_isas() if isa != "SCALAR"]
            ext.extra_objects = list(ext.extra_objects or []) + isa_objects
            # setuptools relinks only when a source or a dependency is newer
            # than the extension: without these, an edited kernel recompiles
            # its object and the old one stays linked in.
            ext.depends = list(ext.depends or []) + isa_objects + HEADERS
            ext.extra_compile_args = common + omp_compile
            ext.extra_link_args = list(ext.extra_link_args or []) + omp_link
            if not msvc and env_flag("GNCPU_SANITIZE"):
                ext.extra_link_args += ["-fsanitize=address,undefined"]
            info = self.gncpu_build_info
            ext.define_macros += [
                ("GNCPU_BUILD_COMPILER", f'"{info["compiler"]}"'),
                ("GNCPU_BUILD_FLAGS", '"' + info["flags"].replace('"', "") + '"'),
            ]
        super().build_extensions()


extension = Extension(
    "gncpu._core",
    sources=BASE_SOURCES,
    include_dirs=["cpp/include", CPP_SRC, np.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    language="c++",
)

setup(
    ext_modules=cythonize(
        [extension],
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
    ),
    cmdclass={"build_ext": BuildExt},
)
