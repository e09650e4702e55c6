"""The lab, seen from inside the guest: the runner set the guest up as
promised, a real V4L2 driver streams, and a bcc probe sees its buffers."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from labtools import TOP, vmrun
from vcam_helpers import vivid_capture_node

pytestmark = pytest.mark.guest

# videobuf2's enum vb2_buffer_state
VB2_BUF_STATE_DONE = 5
VB2_BUF_STATE_ERROR = 6

COUNT_BUFFER_DONE = rb"""
#include <uapi/linux/ptrace.h>

BPF_ARRAY(done_by_state, u64, 8);

int kprobe__vb2_buffer_done(struct pt_regs *ctx, void *vb, int state)
{
	u32 key = state;
	u64 *count = done_by_state.lookup(&key);

	if (count)
		__sync_fetch_and_add(count, 1);
	return 0;
}
"""


@pytest.mark.every_kernel
def test_runs_as_root_in_the_project_with_the_venv_on_path():
    assert os.geteuid() == 0
    assert Path.cwd() == TOP
    assert shutil.which("vcam-producer") == str(TOP / ".venv" / "bin" / "vcam-producer")
    assert shutil.which("pytest") == str(TOP / ".venv" / "bin" / "pytest")
    release = os.uname().release
    series = os.environ.get("KERNEL", "6.12")
    assert re.fullmatch(vmrun.KERNELS[series], release), release


@pytest.mark.every_kernel
def test_vcam_is_loaded_when_the_driver_exists():
    assert Path("/sys/module/vcam").exists() == (TOP / "driver" / "Kbuild").exists()


@pytest.fixture(scope="module")
def vivid():
    yield vivid_capture_node("n_devs=1")
    subprocess.run(["modprobe", "-r", "vivid"], check=True)


@pytest.fixture(scope="module")
def buffer_done_probe(vivid):
    """bcc is slow to compile under TCG: one program for the whole module."""
    from bcc import BPF

    bpf = BPF(text=COUNT_BUFFER_DONE)
    yield bpf[b"done_by_state"]
    bpf.cleanup()


def test_vivid_streams_30_frames_and_bcc_counts_them(vivid, buffer_done_probe):
    buffer_done_probe.clear()
    result = subprocess.run(
        ["v4l2-ctl", "-d", vivid, "--stream-mmap=4", "--stream-count=30", "--stream-to=/dev/null"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    # v4l2-ctl prints one '<' per dequeued frame.
    assert (result.stdout + result.stderr).count("<") == 30
    done = buffer_done_probe[VB2_BUF_STATE_DONE].value
    errored = buffer_done_probe[VB2_BUF_STATE_ERROR].value
    # 30 frames were dequeued; vivid may have finished up to the other
    # queued buffers before STREAMOFF, and STREAMOFF returns the rest with
    # an error: never more completions than frames plus buffers.
    assert 30 <= done <= 30 + 4
    assert done + errored <= 30 + 4
