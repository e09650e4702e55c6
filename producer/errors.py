"""Errors a command explains in one line. Kept apart from the modules that
raise them so the CLI can catch them without importing numpy."""

import errno

from .control import CONTROL_NODE

PATTERNS = ("smpte", "gradient", "counter")  # the test patterns sources.py renders


class SourceError(Exception):
    """A source cannot deliver frames (bad file, decoder failure): one line for the user."""


# The vcam module's limits (driver/README.md, "Limits"): the errno CREATE
# answers with when one is reached, the module parameter that sets it, and
# what was refused ({} is the parameter's value).
LIMIT_PARAMETERS = "/sys/module/vcam/parameters"
LIMITS = {
    errno.ENOSPC: ("max_cameras", "the vcam module allows {} cameras at once on this machine"),
    errno.EDQUOT: ("max_cameras_per_user", "the vcam module allows {} cameras at once per user"),
    errno.EFBIG: ("max_camera_mb", "this camera's slot buffers and 2 capture buffers need more than the {} MiB "
                                   "the vcam module allows per camera (use fewer slots or a smaller frame)"),
}


def limit_value(name: str) -> str:
    """The current value of a vcam module parameter, or "?" where it cannot be read."""
    try:
        with open(f"{LIMIT_PARAMETERS}/{name}") as f:
            return f.read().strip()
    except OSError:
        return "?"


def limit_message(code: int) -> str | None:
    """One line for a CREATE refused by one of the vcam module's limits: which
    limit, its value, how to raise it; None for any other errno."""
    if code not in LIMITS:
        return None
    name, refused = LIMITS[code]
    return (f"{refused.format(limit_value(name))} ({name}); raise it as root with: "
            f"echo N > {LIMIT_PARAMETERS}/{name}, or load the module with: modprobe vcam {name}=N")


def slot_memory_message(index: int, slots: int, size: int, strerror: str) -> str:
    """One line for a driver slot buffer that could not be allocated (VCAM_IOC_EXPORT)."""
    return (f"the driver could not allocate slot buffer {index} of {slots} ({size / 2**20:.1f} MiB each): "
            f"{strerror}; the buffers are charged to this process's memory cgroup, whose memory.max may be "
            "reached (use fewer slots or a smaller frame)")


def _group_of(path: str) -> str | None:
    """The name of the group that owns PATH, unless that is root's."""
    import grp
    import os

    try:
        gid = os.stat(path).st_gid
        return grp.getgrgid(gid).gr_name if gid != 0 else None
    except (OSError, KeyError):
        return None


def open_error(e: OSError, path: str) -> str:
    """A one-line explanation of an OSError from opening or using a device."""
    if e.errno == errno.ENOENT and path == CONTROL_NODE:
        return f"{CONTROL_NODE} does not exist: is the vcam module loaded? (sudo modprobe vcam)"
    if e.errno == errno.EACCES or e.errno == errno.EPERM:
        group = _group_of(path)
        if group:
            # make install gives /dev/vcam to group video; a new group
            # membership counts only from the next login
            return (f"cannot open {path}: permission denied: add yourself to group {group} "
                    f"(sudo usermod -aG {group} $USER), then log out and in again")
        return f"cannot open {path}: permission denied (run as root or join the group that owns it)"
    return f"{path}: {e.strerror or e}"
