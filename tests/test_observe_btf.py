"""observe/btf.py reads struct layouts as pahole does: from the host
kernel's own /sys/kernel/btf/vmlinux, and from split BTF (a module's on
top of vmlinux's) taken out of the lab kernels' media modules. Runs on the
host; tests/test_observe_truth.py checks the layout in the guest, against
vcam's own BTF."""

import lzma
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from observe import probes
from observe.btf import BtfError, KernelBtf

VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")
needs_pahole = pytest.mark.skipif(not shutil.which("pahole"), reason="pahole (dwarves) not installed")

# (struct, member): plain, an array, members inside anonymous unions
VMLINUX_MEMBERS = [("task_struct", "pid"), ("task_struct", "comm"), ("file", "f_op"),
                   ("sk_buff", "len"), ("sk_buff", "dev"), ("page", "mapping")]


def pahole_struct(struct, btf_file, base=None):
    """{member: (offset, size)} and the size of a struct, as pahole prints them."""
    cmd = ["pahole", "-F", "btf", "-C", struct] + (["--btf_base", str(base)] if base else []) + [str(btf_file)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    members = {}
    for name, offset, size in re.findall(r"[\s*](\w+)(?:\[\d+\])*;\s+/\*\s+(\d+)\s+(\d+)\s+\*/", out):
        members.setdefault(name, (int(offset), int(size)))
    return members, int(re.search(r"/\* size: (\d+)", out).group(1))


@needs_pahole
@pytest.mark.skipif(not VMLINUX_BTF.exists(), reason="the host kernel has no BTF")
@pytest.mark.parametrize("struct,member", VMLINUX_MEMBERS)
def test_vmlinux_offsets_are_paholes(struct, member):
    members, size = pahole_struct(struct, VMLINUX_BTF)
    with KernelBtf() as btf:
        assert btf.offsetof("vmlinux", struct, member) == members[member]
        assert btf.sizeof("vmlinux", struct) == size


def test_missing_things_are_one_clear_error(tmp_path):
    with KernelBtf(tmp_path) as btf:
        assert not btf.has("vcam")
        with pytest.raises(BtfError, match=r"^no BTF for videodev \(.*/videodev missing\)$"):
            btf.offsetof("videodev", "video_device", "num")
    if VMLINUX_BTF.exists():
        with KernelBtf() as btf:
            with pytest.raises(BtfError, match="^struct no_such_struct not in vmlinux's BTF$"):
                btf.sizeof("vmlinux", "no_such_struct")
            with pytest.raises(BtfError, match="^struct file has no member no_such_member in vmlinux's BTF$"):
                btf.offsetof("vmlinux", "file", "no_such_member")


def lab_kernels():
    """Installed lab kernels whose headers ship a vmlinux: the base their
    modules' split BTF was made on."""
    found = []
    for build in sorted(Path("/lib/modules").glob("*/build")):
        if (build / "vmlinux").is_file() and list(build.parent.glob("kernel/drivers/media/v4l2-core/videodev.ko*")):
            found.append(build.parent)
    return found


def module_btf(kernel_dir: Path, name: str, dest: Path) -> Path:
    """A module's .BTF section, raw, as /sys/kernel/btf/<module> holds it."""
    ko = next(kernel_dir.glob(f"kernel/drivers/media/**/{name}.ko*"))
    data = lzma.decompress(ko.read_bytes()) if ko.suffix == ".xz" else ko.read_bytes()
    (dest / f"{name}.ko").write_bytes(data)
    subprocess.run(["objcopy", "--dump-section", f".BTF={dest / name.replace('-', '_')}", str(dest / f"{name}.ko")],
                   check=True)
    return dest / name.replace("-", "_")


@needs_pahole
@pytest.mark.skipif(not shutil.which("objcopy"), reason="objcopy (binutils) not installed")
@pytest.mark.parametrize("kernel_dir", lab_kernels(), ids=lambda p: p.name)
def test_module_split_btf_and_the_head_rule(kernel_dir, tmp_path):
    """A /sys/kernel/btf made of a lab kernel's vmlinux and media modules,
    without vcam's: read_layout() lays vcam_device out from its head."""
    vmlinux = kernel_dir / "build" / "vmlinux"
    (tmp_path / "vmlinux").symlink_to(vmlinux)     # an ELF file: libbpf reads its .BTF
    videodev = module_btf(kernel_dir, "videodev", tmp_path)
    vb2 = module_btf(kernel_dir, "videobuf2-common", tmp_path)

    vdev_members, vdev_size = pahole_struct("video_device", videodev, vmlinux)
    _, v4l2_size = pahole_struct("v4l2_device", videodev, vmlinux)
    queue_members, _ = pahole_struct("vb2_queue", vb2, vmlinux)
    buf_members, _ = pahole_struct("vb2_buffer", vb2, vmlinux)
    with KernelBtf(tmp_path) as btf:
        assert btf.offsetof("videodev", "video_device", "num") == vdev_members["num"]
        assert btf.sizeof("videodev", "video_device") == vdev_size
        assert btf.offsetof("videobuf2_common", "vb2_queue", "ops") == queue_members["ops"]
        assert btf.offsetof("videobuf2_common", "vb2_buffer", "index") == buf_members["index"]
        # pointers and longs inside: 8 on x86-64
        assert btf.alignof("videodev", "video_device") == btf.alignof("videobuf2_common", "vb2_queue") == 8

    layout = probes.read_layout(tmp_path)
    vdev = -(-v4l2_size // 8) * 8
    assert layout == probes.Layout(dev_queue=-(-(vdev + vdev_size) // 8) * 8, dev_num=vdev + vdev_members["num"][0],
                                   queue_ops=queue_members["ops"][0], buf_index=buf_members["index"][0])
