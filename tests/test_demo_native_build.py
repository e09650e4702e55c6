"""make demo NATIVE=1's choice of module and its build of the checkout,
on the host at native speed (the guest test, tests/test_demo_native.py,
loads and runs it): the build is made for a kernel whose headers are
installed here, the lab's, as `release`."""

import os
import shutil
import subprocess

import pytest

from labtools import TOP, load_demo, vmrun

SERIES = os.environ.get("KERNEL") or vmrun.DEFAULT_KERNEL
RELEASE = vmrun.find_kernel(SERIES)
SOURCES = shutil.ignore_patterns("*.o", "*.ko", "*.mod*", ".*.cmd", "Module.symvers", "modules.order",
                                 ".built-for", ".tmp*")


def vermagic(module):
    return subprocess.run(["modinfo", "-F", "vermagic", str(module)], capture_output=True, text=True,
                          check=True).stdout.split()[0]


@pytest.mark.skipif(vmrun.build_root_of(RELEASE) is not None,
                    reason="this kernel's headers need the toolchain of their own build root (sid's for 7.2)")
def test_the_checkout_is_built_when_it_has_no_current_build_and_taken_when_it_has(tmp_path, capsys):
    demo = load_demo()
    checkout = tmp_path / "checkout" / "driver"
    shutil.copytree(TOP / "driver", checkout, ignore=SOURCES)

    native = demo.NativeModule(tmp_path / "work", release=RELEASE, driver=checkout)
    assert native.installed is None and native.prebuilt is None
    (tmp_path / "work").mkdir()
    native.build()
    assert f"building the checkout's driver/ for {RELEASE}" in capsys.readouterr().err
    assert vermagic(native.module) == RELEASE
    assert native.module.parent.parent == tmp_path / "work"     # the copy, not the checkout

    # the same module in the checkout, newer than its sources: taken as it is
    shutil.copy2(native.module, checkout / "vcam.ko")
    native = demo.NativeModule(tmp_path / "work2", release=RELEASE, driver=checkout)
    assert native.prebuilt == checkout / "vcam.ko" == native.module
    native.build()
    assert f"using {checkout / 'vcam.ko'}, built for {RELEASE} from the current sources" in capsys.readouterr().err
    assert not (tmp_path / "work2").exists()

    # built for another kernel: not taken
    assert demo.NativeModule(tmp_path / "w", release=RELEASE + "-other", driver=checkout).prebuilt is None

    # a source edited after the build: built afresh
    source = checkout / "vcam-main.c"
    later = (checkout / "vcam.ko").stat().st_mtime + 10
    os.utime(source, (later, later))
    assert demo.NativeModule(tmp_path / "w", release=RELEASE, driver=checkout).prebuilt is None


def test_a_build_that_fails_is_one_error_with_the_compiler_output(tmp_path):
    demo = load_demo()
    checkout = tmp_path / "driver"
    shutil.copytree(TOP / "driver", checkout, ignore=SOURCES)
    with open(checkout / "vcam-main.c", "a") as f:
        f.write("\nthis is not C;\n")
    (tmp_path / "work").mkdir()
    native = demo.NativeModule(tmp_path / "work", release=RELEASE, driver=checkout)
    with pytest.raises(demo.DemoError, match=r"(?s)the module did not build:.*vcam-main\.c.*error"):
        native.build()
