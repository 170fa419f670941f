import os

import pytest

from netbench.lab import cleanup


def pytest_collection_modifyitems(items):
    for item in items:
        if "/tests/lab/" in str(item.fspath):
            item.add_marker(pytest.mark.lab)
            if os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason="lab tests need root (network namespaces)"))


@pytest.fixture(scope="session", autouse=True)
def no_lab_before_tests():
    """Lab tests build their own labs; refuse to clobber one a person left running."""
    if os.geteuid() == 0 and cleanup.lab_namespaces():
        pytest.exit(f"a lab is already up ({', '.join(cleanup.lab_namespaces())}); "
                    "run `netbench lab down` before the lab tests", returncode=3)
    yield
