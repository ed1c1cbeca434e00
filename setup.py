"""Build gncpu's extension: one Cython module linked with the C++ core.

Each ISA kernel (cpp/src/kernel_<isa>.cpp) is compiled on its own with that
ISA's flags; everything else is compiled for the baseline CPU, so one binary
runs anywhere and picks its kernel at runtime.  All translation units compile
in one pool, one per core, the heaviest first; `pip install -v .` shows each
one as it finishes (a fresh build is about a minute on 2 cores).

Switches (environment variables):
  GNCPU_NO_OPENMP=1       build without OpenMP (serial, still correct)
  GNCPU_NATIVE=1          add -march=native to every file (not portable)
  GNCPU_OPENMP_PREFIX=DIR where libomp lives (macOS: include/ and lib/)
  GNCPU_DEBUG=1           keep debug information (-g); release builds have none
  GNCPU_SANITIZE=1        AddressSanitizer + UndefinedBehaviorSanitizer build at
                          -O1 -g (for .ci/sanitizers.sh; needs libasan preloaded)
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
import time
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

VARIANT_SWITCHES = ("GNCPU_NO_OPENMP", "GNCPU_NATIVE", "GNCPU_SANITIZE", "GNCPU_MANYLINUX",
                    "GNCPU_DEBUG")
# Compile order, heaviest first: with one job per core the longest file must
# not start last.  Seconds each at the release flags on a Zen 3: 24, 15, 14,
# 14, -, 10.  Files not named here follow, largest source first.
HEAVIEST_FIRST = ("kernel_scalar", "c_api", "kernel_avx512", "kernel_avx2", "kernel_neon", "_core")
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


def build_jobs():
    """Parallel compile jobs: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def compile_order(source):
    stem = Path(source).stem
    if stem in HEAVIEST_FIRST:
        return (HEAVIEST_FIRST.index(stem), 0)
    return (len(HEAVIEST_FIRST), -os.path.getsize(source))


def compile_in_one_pool(compile_sources, extra_jobs, jobs):
    """A CCompiler.compile that compiles its sources and `extra_jobs` (the ISA
    kernels: (source, extra_postargs) pairs, compiled with the same include
    directories) one source per process, `jobs` at a time, heaviest first, and
    returns every object.  One pool for all: a pool per kind of file left a
    core idle while the other finished the longest file."""
    def compile(sources, output_dir=None, macros=None, include_dirs=None, debug=0,
                extra_preargs=None, extra_postargs=None, depends=None):
        work = [(source, extra_postargs) for source in sources] + list(extra_jobs)
        work.sort(key=lambda job: compile_order(job[0]))
        started = time.monotonic()
        done = []

        def one(job):
            source, postargs = job
            t = time.monotonic()
            objects = compile_sources([source], output_dir=output_dir, macros=macros,
                                      include_dirs=include_dirs, debug=debug,
                                      extra_preargs=extra_preargs, extra_postargs=postargs,
                                      depends=depends)
            done.append(source)
            print(f"gncpu: [{len(done)}/{len(work)}] {source} in {time.monotonic() - t:.0f} s",
                  flush=True)
            return objects

        print(f"gncpu: compiling {len(work)} files, {jobs} at a time", flush=True)
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            objects = [obj for per_source in pool.map(one, work) for obj in per_source]
        print(f"gncpu: compiled in {time.monotonic() - started:.0f} s", flush=True)
        return objects
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

    def _optimisation_flags(self, msvc):
        """(flags for the glue, flags for the ISA kernels).

        Measured on a 2-core Zen 3, both builds loaded in one process and
        called in turn: the glue (argument checks, the scheduler) at -O3, since
        -O2 costs the smallest calls ~4% (1x32x8x8: 3.0 -> 3.1 us).  The
        kernels at -O2 with -O3's vectoriser cost model: their loops are
        written with intrinsics, and -O3's other passes doubled their compile
        time for no speed beyond noise on 14 shapes, dtypes and directions;
        plain -O2 left the channels-last per-channel loops scalar
        (2x1280x16x16 channels-last 1.2x slower).  No debug information unless
        GNCPU_DEBUG=1: it made the extension 38 MiB."""
        if msvc:
            return ["/O2"], ["/O2"]
        if env_flag("GNCPU_SANITIZE"):
            # ASan's usual level: fast to build, and the reports keep their frames.
            return ["-O1", "-g"], ["-O1", "-g"]
        debug = ["-g"] if env_flag("GNCPU_DEBUG") else ["-g0"]
        kernel = ["-O2"]
        if self._compiler_accepts(["-Werror", "-fvect-cost-model=dynamic"]):
            kernel.append("-fvect-cost-model=dynamic")  # GCC's; clang's -O2 vectorises as much
        return ["-O3"] + debug, kernel + debug

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
        glue_opt, kernel_opt = self._optimisation_flags(msvc)
        # Some setuptools versions compile C++ with the C compiler driver
        # ("gcc"), which is fine for gcc and clang alike.
        if msvc:
            common = ["/std:c++17", "/W3", "/fp:precise", "/EHsc"]
        else:
            common = ["-Wall", "-Wextra", "-Wno-unused-function", "-std=c++17",
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
                common += ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                           "-fno-omit-frame-pointer"]
        omp_compile, omp_link = self._openmp_flags(msvc)
        glue_flags = glue_opt + common + omp_compile
        self.gncpu_build_info = {
            "compiler": compiler_description(self.compiler),
            "flags": " ".join(glue_flags) + "; kernels: " + " ".join(kernel_opt),
            "openmp": bool(omp_compile),
            "isas": ["scalar"],
        }

        plain_compile = self.compiler.compile
        for ext in self.extensions:
            self.compiler.compile = plain_compile
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
            # Compiled in the same pool as the extension's own sources, the
            # portable kernel too (with the baseline CPU's flags).
            portable = [] if msvc else ["-Wno-psabi"]  # see kernel_scalar.cpp
            kernel_jobs = [(f"{CPP_SRC}/kernel_{name}.cpp", kernel_opt + common + flags)
                           for name, flags in [("scalar", portable)] + kernels]
            if not msvc and manylinux_policy():
                kernel_jobs.append((MANYLINUX_SOURCE, glue_opt + common))
            self.compiler.compile = compile_in_one_pool(plain_compile, kernel_jobs,
                                                        build_jobs())
            compiled = {name.upper() for name, _ in kernels}
            self.gncpu_build_info["isas"] += [name for name, _ in kernels]
            # dispatch.cpp needs every ISA of the list said yes or no.
            ext.define_macros += [(f"GNCPU_HAVE_{isa}", "1" if isa in compiled else "0")
                                  for isa in ISA_LIST.all_isas() if isa != "SCALAR"]
            # setuptools rebuilds only when a source or a dependency is newer
            # than the extension: the kernels and headers count as sources.
            ext.depends = list(ext.depends or []) + [src for src, _ in kernel_jobs] + HEADERS
            ext.extra_compile_args = glue_flags
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
