"""The default thread count: the CPUs this process may actually use."""

import math
import os
import warnings


def _cgroup_cpu_limit():
    """CPUs allowed by a cgroup quota (containers), or None when unlimited."""
    try:  # cgroup v2
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max" and int(period) > 0:
            return max(1, math.ceil(int(quota) / int(period)))
        return None
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            quota = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period = int(f.read())
        if quota > 0 and period > 0:
            return max(1, math.ceil(quota / period))
    except (OSError, ValueError):
        pass
    return None


def _available_cpus():
    if hasattr(os, "process_cpu_count"):  # Python 3.13+: affinity-aware
        count = os.process_cpu_count()
    elif hasattr(os, "sched_getaffinity"):
        count = len(os.sched_getaffinity(0))
    else:
        count = os.cpu_count()
    return max(1, count or 1)


# The most threads gncpu.set_num_threads accepts (as _core._MAX_THREADS).
MAX_THREADS = 4096

# What the environment asked for and was not done as asked: shown by
# gncpu.build_info()["environment_notes"].
environment_notes: list[str] = []


def _note(message):
    environment_notes.append(message)
    warnings.warn(message, RuntimeWarning, stacklevel=6)  # the user's `import gncpu`


def _omp_num_threads_env():
    """OMP_NUM_THREADS's thread count, or None.  A value gncpu cannot use is
    ignored or clamped with a warning: an environment variable never breaks
    the import."""
    raw = os.environ.get("OMP_NUM_THREADS", "")
    value = raw.split(",")[0].strip()
    if not value:
        return None
    shown = raw if len(raw) <= 40 else raw[:40] + "..."
    try:  # (a run of digits past Python's int-parsing limit is just a big count)
        count = MAX_THREADS + 1 if value.isdecimal() and len(value) > 18 else int(value)
    except ValueError:
        _note(f"OMP_NUM_THREADS={shown!r} is not a thread count; ignored")
        return None
    if count < 1:
        _note(f"OMP_NUM_THREADS={shown!r} is not a positive thread count; ignored")
        return None
    if count > MAX_THREADS:
        _note(f"OMP_NUM_THREADS={shown!r} is more than {MAX_THREADS} threads; using {MAX_THREADS}")
        return MAX_THREADS
    return count


def default_num_threads():
    """OMP_NUM_THREADS if set, else the CPUs in this process's affinity mask,
    capped by a cgroup CPU quota."""
    requested = _omp_num_threads_env()
    if requested is not None:
        return requested
    count = _available_cpus()
    limit = _cgroup_cpu_limit()
    return min(count, limit) if limit else count
