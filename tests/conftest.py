"""Shared fixtures: the real datasets in ../shared/data (a generated stand-in when absent) and
synthetic data."""

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get(
    "MASKRCNN_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def pytest_collection_modifyitems(items):
    """Mark the tests that read the shared data (`make test-bare` runs them on the stand-in)."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.shared_data)


@pytest.fixture(scope="session")
def shared_data(tmp_path_factory) -> Path:
    """Root of the test datasets (Penn-Fudan, COCO subsets): the real ones when present, else a
    stand-in with the same layout, file names and image sizes (tests/stand_in_data.py)."""
    if SHARED_DATA.is_dir() and any(SHARED_DATA.iterdir()):  # an empty folder means: absent
        return SHARED_DATA
    from stand_in_data import write_stand_in

    return write_stand_in(tmp_path_factory.mktemp("stand_in_data"))


@pytest.fixture(scope="session")
def synth_ann(tmp_path_factory) -> Path:
    """annotations.json of a small synthetic-shapes dataset (8 images of 96 px, seed 0)."""
    from maskrcnn.data.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(tmp_path_factory.mktemp("synth"), num_images=8, seed=0, size=96)


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """Code under test may set torch's thread count (the benchmark scripts' --threads, run in
    process): later tests must run with the count the session started with."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
