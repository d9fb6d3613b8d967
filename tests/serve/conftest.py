"""A tiny seeded model for the server tests: it keeps every detection (score threshold 0), so
an image of noise gets some, with masks."""

import warnings

import pytest

import maskrcnn

CLASSES = ("__background__", "circle", "square")


@pytest.fixture(scope="package")
def model():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return maskrcnn.load_model("maskrcnn_r18_fpn", min_size=64, max_size=96, num_classes=3,
                                   class_names=list(CLASSES), box_score_thresh=0.0,
                                   rpn_post_nms_top_n_test=50, box_detections_per_img=8)
