"""The ctypes mirrors match the real headers: every size, offset and ioctl
number of the vcam uAPI (driver/include/uapi/linux/vcam.h) and of the V4L2
and DMA-BUF structures we use (the 6.12 uAPI headers), checked against a C
program built with them. Runs anywhere (needs a C compiler, not the module)."""

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from producer import dmabuf, uapi, v4l2

HEADER_DIR = Path(__file__).resolve().parent.parent / "driver" / "include" / "uapi"
# The guest kernel's uAPI headers; the distribution's (/usr/include) otherwise.
KERNEL_UAPI = Path("/usr/src/linux-headers-6.12.117+deb12-common/include/uapi")

STRUCTS = uapi.STRUCTS + v4l2.STRUCTS + dmabuf.STRUCTS
IOCTLS = list(uapi.VcamIoctl) + list(v4l2.V4l2Ioctl) + list(dmabuf.DmaBufIoctl)
VCAM_CONSTANTS = ("VCAM_MAX_FRAMES", "VCAM_MIN_FRAMES", "VCAM_MAX_WIDTH", "VCAM_MAX_HEIGHT",
                  "VCAM_LABEL_MAX", "VCAM_QUEUE_FD_DRIVER", "VCAM_STATUS_IDLE", "VCAM_STATUS_STREAMING",
                  "VCAM_STATUS_MASK")
V4L2_CONSTANTS = [name for name in dir(v4l2) if name.startswith("V4L2_") and isinstance(getattr(v4l2, name), int)]
DMABUF_CONSTANTS = [name for name in dir(dmabuf) if name.startswith(("DMA_BUF_SYNC_", "UDMABUF_FLAGS_"))]


KERNEL_HEADERS = ("videodev2.h", "v4l2-common.h", "v4l2-controls.h", "dma-heap.h", "udmabuf.h", "dma-buf.h")


def install_kernel_headers(dest: Path) -> list[str]:
    """Make the 6.12 uAPI headers usable from user space the way the
    kernel's headers_install does (drop __user and friends and the
    compiler.h include); -I options for them, or none to use /usr/include."""
    if not KERNEL_UAPI.is_dir():
        return []
    (dest / "linux").mkdir(parents=True)
    for name in KERNEL_HEADERS:
        text = (KERNEL_UAPI / "linux" / name).read_text()
        text = re.sub(r"([\s(])(__user|__force|__iomem)\s", r"\1", text)
        text = text.replace("#include <linux/compiler.h>\n", "")
        (dest / "linux" / name).write_text(text)
    return ["-I", str(dest)]


def members(ctype, prefix: str = "", base: int = 0):
    """(C member designator, offset, size) of every field, nested ones too.
    Anonymous unions have no name in C; fields starting with _ are ours."""
    anonymous = getattr(ctype, "_anonymous_", ())
    for name, ftype, *_ in ctype._fields_:
        if name.startswith("_"):
            continue
        offset = base + getattr(ctype, name).offset
        if name in anonymous:
            yield from members(ftype, prefix, offset)
            continue
        path = prefix + name
        yield path, offset, ctypes.sizeof(ftype)
        if isinstance(ftype, type) and issubclass(ftype, (ctypes.Structure, ctypes.Union)):
            yield from members(ftype, path + ".", offset)


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.fail("no C compiler: install build-essential")
    lines = []
    for s in STRUCTS:
        name = s.__name__
        lines.append(f'printf("size {name} %zu\\n", sizeof(struct {name}));')
        for path, _, _ in members(s):
            lines.append(f'printf("offset {name}.{path} %zu\\n", offsetof(struct {name}, {path}));')
            lines.append(f'printf("msize {name}.{path} %zu\\n", sizeof(((struct {name} *)0)->{path}));')
    for e in IOCTLS:
        lines.append(f'printf("ioctl {e.name} %lu\\n", (unsigned long){e.name});')
    for name in VCAM_CONSTANTS + tuple(V4L2_CONSTANTS) + tuple(DMABUF_CONSTANTS):
        lines.append(f'printf("const {name} %llu\\n", (unsigned long long){name});')
    includes = ["stddef.h", "stdio.h", "sys/time.h", "linux/vcam.h", "linux/videodev2.h",
                "linux/dma-heap.h", "linux/udmabuf.h", "linux/dma-buf.h"]
    src = "".join(f"#include <{h}>\n" for h in includes)
    src += "int main(void)\n{\n" + "\n".join(lines) + "\nreturn 0;\n}\n"
    d = tmp_path_factory.mktemp("uapi")
    (d / "layout.c").write_text(src)
    include = ["-I", str(HEADER_DIR)] + install_kernel_headers(d / "kernel-uapi")
    subprocess.run([cc, "-std=gnu99", "-Wall", "-Werror", *include, "-o", str(d / "layout"), str(d / "layout.c")],
                   check=True)
    # The vcam header alone must also build with no padding anywhere.
    (d / "padded.c").write_text("#include <linux/vcam.h>\nint main(void) { return 0; }\n")
    subprocess.run([cc, "-std=c99", "-Wall", "-Werror", "-Wpadded", "-I", str(HEADER_DIR), "-o", str(d / "padded"),
                    str(d / "padded.c")], check=True)
    out = subprocess.run([str(d / "layout")], check=True, capture_output=True, text=True).stdout
    return {" ".join(line.split()[:2]): int(line.split()[2]) for line in out.splitlines()}


@pytest.mark.parametrize("struct", STRUCTS, ids=lambda s: s.__name__)
def test_struct_layout(c_layout, struct):
    name = struct.__name__
    assert ctypes.sizeof(struct) == c_layout[f"size {name}"], name
    for path, offset, size in members(struct):
        assert offset == c_layout[f"offset {name}.{path}"], f"offset of {name}.{path}"
        assert size == c_layout[f"msize {name}.{path}"], f"size of {name}.{path}"


@pytest.mark.parametrize("request_", IOCTLS, ids=lambda e: e.name)
def test_ioctl_number(c_layout, request_):
    assert int(request_) == c_layout[f"ioctl {request_.name}"], request_.name


def test_spec_numbers():
    """The spec's five ioctls keep their numbers; ours come after them."""
    assert {e.name: hex(e) for e in uapi.VcamIoctl} == {
        "VCAM_IOC_CREATE": "0xc0307600",
        "VCAM_IOC_QUEUE": "0x40187601",
        "VCAM_IOC_DEQUEUE": "0x80107602",
        "VCAM_IOC_STATUS": "0x80087603",
        "VCAM_IOC_WAIT": "0xc0107604",
        "VCAM_IOC_EXPORT": "0xc0107605",
    }


def test_constants(c_layout):
    for module, names in ((uapi, VCAM_CONSTANTS), (v4l2, V4L2_CONSTANTS), (dmabuf, DMABUF_CONSTANTS)):
        for name in names:
            assert getattr(module, name) == c_layout[f"const {name}"], name
