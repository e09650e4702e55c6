"""Struct layouts from the running kernel's BTF (/sys/kernel/btf/*), read
with libbpf through ctypes: libbpf1 is a dependency of bcc (libbpfcc), so
wherever bcc runs it is there (Debian 12's 1.1 reads the BTF of the lab's
kernels, 6.1 to 7.2; tests/test_observe_btf.py checks it against pahole).

A module's BTF there is *split* BTF on top of vmlinux's: its type ids and
string offsets continue vmlinux's, so it is parsed with vmlinux's as its
base (btf__parse_split). Reading these files needs no privileges.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from pathlib import Path

BTF_DIR = Path("/sys/kernel/btf")

# enum btf_kind (uapi/linux/btf.h), the two we look into
BTF_KIND_STRUCT, BTF_KIND_UNION = 4, 5


class BtfError(Exception):
    """BTF missing or not what we expect; the message says which."""


class _BtfType(ctypes.Structure):
    """struct btf_type; a struct's `vlen` btf_members follow it."""
    _fields_ = [("name_off", ctypes.c_uint32), ("info", ctypes.c_uint32), ("size", ctypes.c_uint32)]

    @property
    def kind(self) -> int:
        return (self.info >> 24) & 0x1f

    @property
    def vlen(self) -> int:
        return self.info & 0xffff

    @property
    def kflag(self) -> bool:
        return bool(self.info >> 31)


class _BtfMember(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("type", ctypes.c_uint32), ("offset", ctypes.c_uint32)]


_libbpf = None


def libbpf():
    """libbpf.so.1 with the prototypes we use (stable ABI since libbpf 0.3)."""
    global _libbpf
    if _libbpf is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("bpf") or "libbpf.so.1", use_errno=True)
        except OSError as e:
            raise BtfError(f"libbpf is not loadable ({e})") from None
        p, u32 = ctypes.c_void_p, ctypes.c_uint32
        for name, restype, argtypes in (
                ("btf__parse_split", p, [ctypes.c_char_p, p]),
                ("btf__free", None, [p]),
                ("btf__find_by_name_kind", ctypes.c_int32, [p, ctypes.c_char_p, u32]),
                ("btf__type_by_id", ctypes.POINTER(_BtfType), [p, u32]),
                ("btf__name_by_offset", ctypes.c_char_p, [p, u32]),
                ("btf__resolve_type", ctypes.c_int, [p, u32]),
                ("btf__resolve_size", ctypes.c_int64, [p, u32]),
                ("btf__align_of", ctypes.c_int, [p, u32])):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = restype, argtypes
        _libbpf = lib
    return _libbpf


class KernelBtf:
    """The running kernel's BTF: vmlinux's, and modules' on top of it, each
    parsed once, on first use.

        with KernelBtf() as btf:
            btf.offsetof("videodev", "video_device", "num")   # (bytes, size)
    """

    def __init__(self, root: Path = BTF_DIR):
        self.root, self._lib, self._parsed = root, libbpf(), {}

    def has(self, module: str) -> bool:
        return (self.root / module).exists()

    def _btf(self, module: str):
        if module not in self._parsed:
            path = self.root / module
            if not path.exists():
                raise BtfError(f"no BTF for {module} ({path} missing)")
            base = None if module == "vmlinux" else self._btf("vmlinux")
            ctypes.set_errno(0)
            btf = self._lib.btf__parse_split(os.fsencode(path), base)
            if not btf or btf >= 2**64 - 4095:     # NULL, or ERR_PTR() from a libbpf before 1.0
                err = 2**64 - btf if btf else ctypes.get_errno()
                raise BtfError(f"cannot read {path}: {os.strerror(err or errno.EINVAL)}")
            self._parsed[module] = btf
        return self._parsed[module]

    def close(self) -> None:
        # split BTF first: each refers to vmlinux's
        for module in sorted(self._parsed, key=lambda m: m == "vmlinux"):
            self._lib.btf__free(self._parsed.pop(module))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def struct_id(self, module: str, name: str) -> int:
        tid = self._lib.btf__find_by_name_kind(self._btf(module), name.encode(), BTF_KIND_STRUCT)
        if tid <= 0:
            raise BtfError(f"struct {name} not in {module}'s BTF")
        return tid

    def sizeof(self, module: str, struct: str) -> int:
        size = self._lib.btf__resolve_size(self._btf(module), self.struct_id(module, struct))
        if size <= 0:
            raise BtfError(f"cannot work out the size of struct {struct} in {module}'s BTF")
        return size

    def alignof(self, module: str, struct: str) -> int:
        """As libbpf works it out: the largest alignment of its members
        (an __aligned() on the struct itself is not in BTF)."""
        align = self._lib.btf__align_of(self._btf(module), self.struct_id(module, struct))
        if align <= 0:
            raise BtfError(f"cannot work out the alignment of struct {struct} in {module}'s BTF")
        return align

    def offsetof(self, module: str, struct: str, member: str) -> tuple[int, int]:
        """(offset in bytes, size in bytes) of a member, also one inside an
        anonymous struct or union member."""
        found = self._member(self._btf(module), self.struct_id(module, struct), member)
        if found is None:
            raise BtfError(f"struct {struct} has no member {member} in {module}'s BTF")
        return found

    def _member(self, btf, tid: int, name: str) -> tuple[int, int] | None:
        t = self._lib.btf__type_by_id(btf, tid).contents
        members = ctypes.cast(ctypes.addressof(t) + ctypes.sizeof(_BtfType),
                              ctypes.POINTER(_BtfMember * t.vlen)).contents
        for m in members:
            # kflag: the low 24 bits are the offset in bits, the rest a bitfield's size
            bits = m.offset & 0xffffff if t.kflag else m.offset
            mname = self._lib.btf__name_by_offset(btf, m.name_off) or b""
            if mname.decode() == name:
                if bits % 8:
                    raise BtfError(f"member {name} is a bitfield")
                return bits // 8, self._lib.btf__resolve_size(btf, m.type)
            if not mname:
                inner = self._lib.btf__resolve_type(btf, m.type)
                if inner > 0 and self._lib.btf__type_by_id(btf, inner).contents.kind in (
                        BTF_KIND_STRUCT, BTF_KIND_UNION):
                    found = self._member(btf, inner, name)
                    if found:
                        return bits // 8 + found[0], found[1]
        return None
