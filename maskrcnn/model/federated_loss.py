"""The federated loss for long-tailed, federated datasets such as LVIS (Zhou et al., "Probabilistic
two-stage detection", 2021): a per-class sigmoid cross-entropy that, in each step, only counts a
subset of the classes: those present in the batch's ground truth, plus negatives drawn with
probability proportional to frequency ** 0.5, up to `num_classes` in all. A rare class is then
rarely pushed down as a negative in images where nobody looked for it.

Labels follow the model's convention: 0 is background, 1..K the classes; the (N, K + 1) logits'
column 0 is not used by a sigmoid classifier.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FREQUENCY_POWER = 0.5  # the paper's weight: image frequency ** 0.5


def class_weights(image_counts: torch.Tensor) -> torch.Tensor:
    """(K,) images in which each class appears -> (K,) sampling weights of negative classes."""
    return image_counts.double().clamp(min=1) ** FREQUENCY_POWER


def federated_classes(labels: torch.Tensor, weights: torch.Tensor, num_classes: int,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """(N,) RoI labels, (K,) weights -> the classes (1..K) that count this step: every class in
    `labels` and, drawn without replacement by weight, negatives up to `num_classes` in all."""
    present = labels[labels > 0].unique()
    missing = num_classes - len(present)
    if missing <= 0:
        return present
    prob = weights.to(torch.float64).clone()
    prob[present - 1] = 0  # already in
    missing = min(missing, int((prob > 0).sum()))
    if missing == 0:
        return present
    drawn = torch.multinomial(prob, missing, replacement=False, generator=generator) + 1
    return torch.cat([present, drawn.to(present.device)])


def federated_loss(logits: torch.Tensor, labels: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """(N, K + 1) logits, (N,) labels, the classes that count -> mean over RoIs of the summed
    binary cross-entropy of those classes (a background RoI's targets are all 0)."""
    n, k = logits.shape[0], logits.shape[1] - 1
    target = F.one_hot(labels, k + 1)[:, 1:].to(logits.dtype)  # (N, K), background row all 0
    counted = torch.zeros(k, dtype=logits.dtype, device=logits.device)
    counted[classes.to(logits.device) - 1] = 1
    loss = F.binary_cross_entropy_with_logits(logits[:, 1:], target, reduction="none") * counted
    return loss.sum() / max(n, 1)
