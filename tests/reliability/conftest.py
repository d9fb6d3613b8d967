"""Issue 18: what a hostile but ordinary user feeds the command line. Shared fixtures.

Every case asserts the exit status, that stderr holds exactly one line naming the file and the
problem, and that files written before (results of other images, checkpoints, metrics) survive.
"""

import warnings

import pytest


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """Random maskrcnn_r18_fpn weights, config embedded (3 classes, else the preset), 125 MB.
    Tests pass the small input size with --set min_size=64 --set max_size=96 (SMALL)."""
    import maskrcnn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = maskrcnn.load_model("maskrcnn_r18_fpn", precision=None, num_classes=3,
                                    class_names=["__background__", "a", "b"])
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    maskrcnn.save_weights(model, path)
    return path


@pytest.fixture(scope="session")
def shapes(tmp_path_factory):
    """(annotations.json, images folder) of 3 synthetic 64-px images."""
    from maskrcnn.data.synthetic import write_synthetic_dataset

    root = tmp_path_factory.mktemp("shapes")
    return write_synthetic_dataset(root, num_images=3, seed=0, size=64), root / "images"
