"""The ctypes mirror of the vcam uAPI matches the real header: every size,
offset and ioctl number, checked against a C program built with it.
Runs anywhere (needs a C compiler, not the module)."""

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from producer import uapi

HEADER_DIR = Path(__file__).resolve().parent.parent / "driver" / "include" / "uapi"


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.fail("no C compiler: install build-essential")
    lines = []
    for s in uapi.STRUCTS:
        name = s.__name__
        lines.append(f'printf("size {name} %zu\\n", sizeof(struct {name}));')
        for field, *_ in s._fields_:
            lines.append(f'printf("offset {name}.{field} %zu\\n", offsetof(struct {name}, {field}));')
    for e in uapi.VcamIoctl:
        lines.append(f'printf("ioctl {e.name} %lu\\n", (unsigned long){e.name});')
    for name in ("VCAM_MAX_FRAMES", "VCAM_MIN_FRAMES", "VCAM_MAX_WIDTH", "VCAM_MAX_HEIGHT",
                 "VCAM_LABEL_MAX", "VCAM_QUEUE_FD_DRIVER", "VCAM_STATUS_IDLE", "VCAM_STATUS_STREAMING", "VCAM_STATUS_MASK"):
        lines.append(f'printf("const {name} %llu\\n", (unsigned long long){name});')
    src = "#include <stddef.h>\n#include <stdio.h>\n#include <linux/vcam.h>\nint main(void)\n{\n" + "\n".join(lines) + "\nreturn 0;\n}\n"
    d = tmp_path_factory.mktemp("uapi")
    (d / "layout.c").write_text(src)
    subprocess.run([cc, "-std=c99", "-Wall", "-Werror", "-Wpadded", "-I", str(HEADER_DIR),
                    "-o", str(d / "layout"), str(d / "layout.c")], check=True)
    out = subprocess.run([str(d / "layout")], check=True, capture_output=True, text=True).stdout
    return {" ".join(line.split()[:2]): int(line.split()[2]) for line in out.splitlines()}


def test_struct_sizes(c_layout):
    for s in uapi.STRUCTS:
        assert ctypes.sizeof(s) == c_layout[f"size {s.__name__}"], s.__name__


def test_field_offsets(c_layout):
    for s in uapi.STRUCTS:
        for field, *_ in s._fields_:
            assert getattr(s, field).offset == c_layout[f"offset {s.__name__}.{field}"], f"{s.__name__}.{field}"


def test_ioctl_numbers(c_layout):
    for e in uapi.VcamIoctl:
        assert int(e) == c_layout[f"ioctl {e.name}"], e.name


def test_spec_numbers():
    assert {e.name: hex(e) for e in uapi.VcamIoctl} == {
        "VCAM_IOC_CREATE": "0xc0307600",
        "VCAM_IOC_QUEUE": "0x40187601",
        "VCAM_IOC_DEQUEUE": "0x80107602",
        "VCAM_IOC_STATUS": "0x80087603",
        "VCAM_IOC_WAIT": "0xc0107604",
    }


def test_constants(c_layout):
    for name in ("VCAM_MAX_FRAMES", "VCAM_MIN_FRAMES", "VCAM_MAX_WIDTH", "VCAM_MAX_HEIGHT",
                 "VCAM_LABEL_MAX", "VCAM_QUEUE_FD_DRIVER", "VCAM_STATUS_IDLE", "VCAM_STATUS_STREAMING", "VCAM_STATUS_MASK"):
        assert getattr(uapi, name) == c_layout[f"const {name}"], name
