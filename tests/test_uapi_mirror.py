"""The ctypes mirrors match the real headers: every size, offset and ioctl
number of the vcam uAPI (driver/include/uapi/linux/vcam.h) and of the V4L2
and DMA-BUF structures we use, checked against a C program built with the
uAPI headers of each lab kernel (6.1, 6.12, 7.2: the installed headers of
the kernel lab/vm-run boots for the series). Runs on the host (needs a C
compiler and the kernels' headers, not the module).

The headers are found the way the runner finds its kernel, never guessed:
the kernel under test ($KERNEL, else the runner's default) must be there
(make setup installs it) or the test fails; another series not installed
is skipped, saying so. Nothing falls back to /usr/include's headers."""

import ctypes
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from labtools import vmrun
from producer import dmabuf, uapi, v4l2

HEADER_DIR = Path(__file__).resolve().parent.parent / "driver" / "include" / "uapi"
# The series under test, as lab/vm-run and make choose it.
UNDER_TEST = os.environ.get("KERNEL") or vmrun.DEFAULT_KERNEL

STRUCTS = uapi.STRUCTS + v4l2.STRUCTS + dmabuf.STRUCTS
IOCTLS = list(uapi.VcamIoctl) + list(v4l2.V4l2Ioctl) + list(dmabuf.DmaBufIoctl)
VCAM_CONSTANTS = ("VCAM_MAX_FRAMES", "VCAM_MIN_FRAMES", "VCAM_MAX_WIDTH", "VCAM_MAX_HEIGHT",
                  "VCAM_LABEL_MAX", "VCAM_QUEUE_FD_DRIVER", "VCAM_STATUS_IDLE", "VCAM_STATUS_STREAMING",
                  "VCAM_STATUS_MASK")
V4L2_CONSTANTS = [name for name in dir(v4l2) if name.startswith("V4L2_") and isinstance(getattr(v4l2, name), int)]
DMABUF_CONSTANTS = [name for name in dir(dmabuf) if name.startswith(("DMA_BUF_SYNC_", "UDMABUF_FLAGS_"))]


KERNEL_HEADERS = ("videodev2.h", "v4l2-common.h", "v4l2-controls.h", "dma-heap.h", "udmabuf.h", "dma-buf.h")


def kernel_uapi(series: str) -> Path:
    """include/uapi of the newest installed kernel of SERIES (the one
    lab/vm-run boots): /lib/modules/<version>/build is Debian's
    linux-headers-<version>, whose Makefile includes its -common package's,
    where the uAPI headers are (inside the kernel's build root for sid's);
    a kernel tree of one's own has them in place."""
    try:
        version = vmrun.find_kernel(series)
    except vmrun.RunnerError as e:
        if series == UNDER_TEST:
            pytest.fail(f"the uAPI headers of the kernel under test: {e}", pytrace=False)
        pytest.skip(f"the {series} kernel is not installed (make setup KERNEL={series} installs it)")
    build = Path("/lib/modules") / version / "build"
    source = build
    m = re.search(r"^include\s+(/\S+)/Makefile\s*$", (build / "Makefile").read_text(), re.M)
    if m:
        source = (vmrun.build_root_of(version) or Path("/")) / m[1].lstrip("/")
    uapi_dir = source / "include" / "uapi"
    missing = [name for name in KERNEL_HEADERS if not (uapi_dir / "linux" / name).is_file()]
    if missing:
        pytest.fail(f"{version}'s headers ({uapi_dir}) lack {', '.join(missing)}", pytrace=False)
    return uapi_dir


def install_kernel_headers(kernel_uapi_dir: Path, dest: Path) -> list[str]:
    """Make a kernel's uAPI headers usable from user space the way the
    kernel's headers_install does (drop __user and friends and the
    compiler.h include); the -I options that put them first."""
    (dest / "linux").mkdir(parents=True)
    for name in KERNEL_HEADERS:
        text = (kernel_uapi_dir / "linux" / name).read_text()
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


@pytest.fixture(scope="module", params=sorted(vmrun.KERNELS, key=vmrun.version_key))
def c_layout(request, tmp_path_factory):
    """What a C program built with the vcam header and the uAPI headers of
    one lab kernel says of every size, offset, ioctl and constant."""
    kernel_uapi_dir = kernel_uapi(request.param)
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
    include = ["-I", str(HEADER_DIR)] + install_kernel_headers(kernel_uapi_dir, d / "kernel-uapi")
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


def test_the_kernel_under_test_is_a_lab_kernel():
    assert UNDER_TEST in vmrun.KERNELS, f"KERNEL={UNDER_TEST}: lab/vm-run knows {', '.join(vmrun.KERNELS)}"
