"""Shared fixtures: the real datasets in ../shared/data (skipped when absent) and synthetic data."""

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get(
    "MASKRCNN_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real test datasets (Penn-Fudan, COCO subsets); skips the test when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (set MASKRCNN_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def synth_ann(tmp_path_factory) -> Path:
    """annotations.json of a small synthetic-shapes dataset (8 images of 96 px, seed 0)."""
    from maskrcnn.data.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(tmp_path_factory.mktemp("synth"), num_images=8, seed=0, size=96)
