"""Two tiers: tests marked `guest` need the vcam module and run only inside
the guest kernel (lab/vm-run sets VCAM_GUEST=1); all others run anywhere."""

import os

import pytest

IN_GUEST = os.environ.get("VCAM_GUEST") == "1"


def pytest_runtest_setup(item):
    # A guest test that lands on the host must fail, not skip: a skip would
    # let a broken runner look like a green suite.
    if item.get_closest_marker("guest") and not IN_GUEST:
        pytest.fail(
            "this test needs the vcam module and must run in the guest kernel: "
            "lab/vm-run -- pytest -m guest ...",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def fault_target(tmp_path_factory):
    """tests/fault-target.c built for this run (tests/fault_procs.py)."""
    from fault_procs import build

    return build(tmp_path_factory.mktemp("fault-target"))
