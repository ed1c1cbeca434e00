"""The default thread count: the CPUs this process may actually use."""

import math
import os


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


def _omp_num_threads_env():
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    try:
        count = int(value)
    except ValueError:
        return None
    return count if count >= 1 else None


def default_num_threads():
    """OMP_NUM_THREADS if set, else the CPUs in this process's affinity mask,
    capped by a cgroup CPU quota."""
    requested = _omp_num_threads_env()
    if requested is not None:
        return requested
    count = _available_cpus()
    limit = _cgroup_cpu_limit()
    return min(count, limit) if limit else count
