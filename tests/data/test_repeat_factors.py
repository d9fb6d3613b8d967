"""Repeat-factor sampling (LVIS paper, sec. 5) against hand-computed factors and its sampler."""

from __future__ import annotations

import math

import pytest
import torch

from maskrcnn.data.loader import GroupedBatches
from maskrcnn.data.repeat_factors import repeat_factors, repeated_indices


def test_factors_equal_hand_computed_values():
    # 10 images: class 1 in all ten (f = 1), class 2 in two (f = 0.2), class 3 in one (f = 0.1)
    labels = [{1}] * 7 + [{1, 2}, {1, 2, 3}, set()]
    labels[9] = {1}
    got = repeat_factors(labels, threshold=0.5)
    r2, r3 = math.sqrt(0.5 / 0.2), math.sqrt(0.5 / 0.1)  # 1.581..., 2.236...
    expected = [1.0] * 7 + [r2, r3, 1.0]  # an image takes its rarest class's factor
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-15)
    assert repeat_factors([{1}, {2}, set()], threshold=0.001).tolist() == [1.0, 1.0, 1.0]  # t below every f
    assert repeat_factors([set(), {1}], 0.9).tolist() == [1.0, math.sqrt(0.9 / 0.5)]  # no labels: once


def test_epoch_repeats_each_image_its_factor_on_average():
    factors = torch.tensor([1.0, 2.5, 1.2, 3.0], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    epochs = 4000
    counts = torch.zeros(4)
    for _ in range(epochs):
        idx = repeated_indices(factors, gen)
        step = torch.bincount(idx, minlength=4)
        assert (step >= factors.floor().long()).all() and (step <= factors.ceil().long()).all()
        counts += step
    # the mean of a Bernoulli(p) over 4000 epochs is within 5 standard errors of p
    tolerance = 5 * torch.sqrt(0.25 / torch.tensor(epochs))
    assert ((counts / epochs - factors.float()).abs() <= tolerance).all()


def test_batches_with_repeat_factors_are_a_pure_function_of_the_seed():
    factors = torch.tensor([1.0, 3.0, 1.0, 1.5], dtype=torch.float64)
    a = GroupedBatches(4, 2, seed=7, repeat_factors=factors)
    b = GroupedBatches(4, 2, seed=7, repeat_factors=factors)
    first = [batch for batch, _ in zip(a, range(20))]
    assert first == [batch for batch, _ in zip(b, range(20))]
    seen = [index for batch in first for _, index in batch]
    assert seen.count(1) > seen.count(0)  # the rare image comes round more often
    plain = GroupedBatches(4, 2, seed=7)
    assert sorted(plain.epoch_order(0)) == [0, 1, 2, 3]


@pytest.mark.parametrize("sampler,threshold", [("bogus", 0.001), ("repeat_factor", 0.0), ("repeat_factor", 2.0)])
def test_bad_sampler_settings_are_config_errors(sampler, threshold, synth_ann):
    from maskrcnn.config import apply_overrides
    from maskrcnn.errors import ConfigError
    from maskrcnn.presets import get_preset
    from maskrcnn.training.trainer import check_config

    with pytest.raises(ConfigError, match="data.sampler|data.repeat_threshold"):
        cfg = apply_overrides(get_preset("maskrcnn_r18_fpn"), [f"data.sampler={sampler}",
                                                               f"data.repeat_threshold={threshold}",
                                                               f"data.train_ann={synth_ann}"])
        check_config(cfg, torch.device("cpu"), 1)


def test_the_trainer_samples_by_the_datasets_factors(synth_ann):
    from maskrcnn.config import apply_overrides
    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.training import distributed
    from maskrcnn.training.trainer import _train_loader
    from maskrcnn.presets import get_preset

    dataset = CocoDataset(synth_ann)
    cfg = apply_overrides(get_preset("maskrcnn_r18_fpn"), ["data.sampler=repeat_factor", "data.repeat_threshold=1.0"])
    loader = _train_loader(cfg, dataset, 0, distributed.DistInfo(rank=0, world_size=1, local_rank=0))
    factors = loader.batch_sampler.batches.repeat_factors
    torch.testing.assert_close(factors, repeat_factors(dataset.image_labels(), 1.0))
    assert (factors > 1).any()  # with t = 1 every class below 100 % of the images is repeated
