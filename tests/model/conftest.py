import pytest

from visd_core.parallel import destroy_distributed, init_distributed


@pytest.fixture(scope="session")
def world1():
    """This pytest process as a world of one (gloo over an in-memory store)."""
    d = init_distributed("gloo")
    yield d
    destroy_distributed()
