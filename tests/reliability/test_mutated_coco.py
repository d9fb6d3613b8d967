"""Issue 25's property: randomly mutated COCO files (fields removed, types changed, values out of
range, structures nested wrongly) given to check-data, train (2 iterations of a tiny model) and
eval end with exit 0 or 2, never 1 (an internal error), and never print a traceback."""

import copy
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hostile_checks import train_argv
from reliability_helpers import run_cli

SECTIONS = ("images", "annotations", "categories")
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4), st.lists(st.integers(-2, 100), max_size=5),
    st.dictionaries(st.sampled_from(["size", "counts", "id"]), st.integers(-1, 70), max_size=2),
)  # fmt: skip
OUT_OF_RANGE = st.sampled_from([-1, 0, 10**9, -(10**9), 0.5, float("nan")])


@st.composite
def mutated(draw, base: dict) -> dict:
    """`base` with one to three mutations, each at a random record and field."""
    data = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        section = draw(st.sampled_from(SECTIONS))
        kind = draw(st.sampled_from(["remove", "retype", "nest", "range", "record", "rle", "section"]))
        if kind == "section":
            data[section] = draw(st.sampled_from([None, {}, 5, [[]], "images"]))
            continue
        records = data.get(section)
        if not isinstance(records, list) or not records:
            continue
        i = draw(st.integers(0, len(records) - 1))
        if kind == "record":
            records[i] = draw(VALUES)
            continue
        record = records[i]
        if not isinstance(record, dict) or not record:
            continue
        if kind == "rle":
            if isinstance(record.get("segmentation"), dict):
                record["segmentation"][draw(st.sampled_from(["size", "counts"]))] = draw(VALUES)
            continue
        key = draw(st.sampled_from(sorted(record)))
        if kind == "remove":
            del record[key]
        elif kind == "retype":
            record[key] = draw(VALUES)
        elif kind == "nest":
            record[key] = draw(st.sampled_from([[record[key]], {"value": record[key]}]))
        else:
            record[key] = draw(OUT_OF_RANGE)
    return data


def _base(shapes) -> dict:
    """Two images of the synthetic set with their annotations (RLEs) and every category."""
    data = json.loads(shapes[0].read_text())
    keep = {im["id"] for im in data["images"][:2]}
    return {"images": data["images"][:2], "categories": data["categories"],
            "annotations": [a for a in data["annotations"] if a["image_id"] in keep]}


@pytest.fixture(scope="module")
def base(shapes):
    return _base(shapes)


def _assert_handled(code: int, err: str) -> None:
    assert code in (0, 2), err
    assert "Traceback" not in err and "internal error" not in err, err


@pytest.mark.slow
def test_mutated_coco_files_never_reach_an_internal_error(capsys, shapes, base):
    @settings(max_examples=20, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(data=mutated(base))
    def check(data):
        work = Path(tempfile.mkdtemp(prefix="mutated-"))
        ann = work / "ann.json"
        ann.write_text(json.dumps(data))  # NaN / Infinity written as JSON's usual extension
        results = work / "results.json"
        results.write_text(json.dumps([{"image_id": 1, "category_id": 1, "score": 0.5, "bbox": [1, 1, 9, 9]}]))
        _assert_handled(*run_cli(capsys, "check-data", "--data", ann, "--images", shapes[1],
                                 "--out", work / "check")[::2])
        _assert_handled(*run_cli(capsys, "train", *train_argv(str(ann), str(shapes[1]), work / "run"))[::2])
        _assert_handled(*run_cli(capsys, "eval", "--results", results, "--data", ann, "--out", work / "eval")[::2])

    check()
