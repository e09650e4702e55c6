"""v4l2-compliance, streaming tests included, with a producer streaming."""

import os
import re
import subprocess

import pytest

from vcam_helpers import Camera, ProducerThread, kernel_version, vivid_capture_node

# every_kernel: also in the kernel tier of the lab's other kernels (make test)
pytestmark = [pytest.mark.guest, pytest.mark.every_kernel]


def compliance_tool() -> str:
    """v4l2-compliance older than 1.26 predates the kernel's
    v4l2_create_buffers.max_num_buffers (6.8) and fails every driver on
    CREATE_BUFS; $V4L2_COMPLIANCE names a newer one."""
    tool = os.environ.get("V4L2_COMPLIANCE", "v4l2-compliance")
    out = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"v4l2-compliance (\d+)\.(\d+)", out)
    assert m, f"{tool} --version: {out!r}"
    if (int(m[1]), int(m[2])) < (1, 26) and kernel_version() >= (6, 8):
        pytest.fail(f"{tool} is {m[1]}.{m[2]}: too old for this kernel; set V4L2_COMPLIANCE to v4l2-compliance >= 1.26")
    return tool


def test_v4l2_compliance_streaming(tmp_path):
    tool = compliance_tool()
    expbuf = vivid_capture_node()
    with Camera(nr_frames=4, width=320, height=240, label="Compliance Cam") as cam:
        with ProducerThread(cam):
            r = subprocess.run(
                [tool, "-d", cam.video, "-s20", "-e", expbuf],
                capture_output=True, text=True, timeout=900,
            )
    out = r.stdout + r.stderr
    (tmp_path / "compliance.txt").write_text(out)
    print(out)
    m = re.search(r"Total for vcam device \S+: (\d+), Succeeded: (\d+), Failed: (\d+), Warnings: (\d+)", out)
    assert m, "no v4l2-compliance summary"
    total, ok, failed, warnings = map(int, m.groups())
    assert (failed, warnings) == (0, 0), [l for l in out.splitlines() if "fail" in l or "warn" in l]
    assert total == ok
    # the streaming tests ran, with every memory type
    for what in ("MMAP", "USERPTR", "DMABUF"):
        assert re.search(rf"test {what}.*: OK", out), f"{what} streaming not tested"
