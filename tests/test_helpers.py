"""The shared test helpers (tests/vcam_helpers.py) do what the tests lean
on them for; host tier, fast."""

import os
import threading

import pytest

from vcam_helpers import kernel_version, sleeping_in, wait_blocked, wait_until


@pytest.mark.parametrize("release, version", [
    ("6.1.0-57-amd64", (6, 1, 0)),
    ("6.12.117+deb12-amd64", (6, 12, 117)),
    ("7.2.13+deb14-amd64", (7, 2, 13)),
    ("6.8", (6, 8)),
])
def test_kernel_version_is_numeric(release, version):
    assert kernel_version(release) == version


def test_kernel_versions_compare_as_numbers():
    # as strings, "6.12..." < "6.8" and "10.0" < "6.8"
    assert kernel_version("6.12.117+deb12-amd64") >= (6, 8)
    assert kernel_version("10.0.1") >= (6, 8)
    assert kernel_version("6.1.0-57-amd64") < (6, 8)
    assert kernel_version() == kernel_version(os.uname().release)


def test_wait_until_returns_the_value_or_names_what_it_waited_for():
    calls = []
    assert wait_until(lambda: calls.append(1) or len(calls) >= 3 and "ready", 5, interval=0) == "ready"
    with pytest.raises(AssertionError, match="waiting for the moon"):
        wait_until(lambda: False, 0.05, "the moon")

    def not_listening_yet():
        calls.append(1)
        if len(calls) < 6:
            raise ConnectionRefusedError
        return True

    assert wait_until(not_listening_yet, 5, ignore=(OSError,), interval=0)
    with pytest.raises(ZeroDivisionError):  # not ignored
        wait_until(lambda: 1 / 0, 5)


def test_wait_blocked_sees_a_thread_sleep_in_its_system_call():
    r, w = os.pipe()
    try:
        reader = threading.Thread(target=os.read, args=(r, 1))
        assert not sleeping_in(threading.get_native_id(), "read", r)  # this thread runs
        reader.start()
        wait_blocked(reader.native_id, "read", r, timeout=10)
        assert not sleeping_in(reader.native_id, "read", w)  # another fd
        assert not sleeping_in(reader.native_id, "ioctl", r)
        os.write(w, b"x")
        reader.join(10)
        assert not reader.is_alive()
    finally:
        os.close(r)
        os.close(w)
