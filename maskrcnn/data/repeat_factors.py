"""Repeat-factor sampling for long-tailed data (Gupta et al., LVIS, CVPR 2019, sec. 5).

Category c appearing in a fraction f(c) of the training images gets r(c) = max(1, sqrt(t / f(c)));
an image is repeated r(I) = max of r(c) over its categories (1 without annotations) times per
epoch, in expectation: floor(r) times, plus once more with probability r - floor(r).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterable

import torch


def repeat_factors(image_labels: list[Iterable[int]], threshold: float) -> torch.Tensor:
    """(N,) float64 r(I) from each image's set of labels."""
    sets = [set(labels) for labels in image_labels]
    images_with = Counter(c for labels in sets for c in labels)
    category = {c: max(1.0, math.sqrt(threshold / (n / len(sets)))) for c, n in images_with.items()}
    return torch.tensor([max((category[c] for c in labels), default=1.0) for labels in sets],
                        dtype=torch.float64)


def repeated_indices(factors: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One epoch's image indices: image i floor(r_i) times, and once more with probability
    r_i - floor(r_i) (stochastic rounding drawn from `generator`)."""
    whole = factors.floor()
    counts = whole + (torch.rand(len(factors), generator=generator, dtype=torch.float64) < factors - whole)
    return torch.repeat_interleave(torch.arange(len(factors)), counts.long())


def class_image_counts(image_labels: list[Iterable[int]], num_classes: int) -> torch.Tensor:
    """(K,) images holding each class 1..K (num_classes counts background)."""
    counts = torch.zeros(num_classes - 1)
    for labels in image_labels:
        for c in set(labels):
            counts[c - 1] += 1
    return counts
