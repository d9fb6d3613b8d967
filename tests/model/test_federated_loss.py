"""The federated loss against hand-computed values and its class sampling against its law."""

from __future__ import annotations

import math

import torch

from maskrcnn.model.federated_loss import class_weights, federated_classes, federated_loss


def test_loss_counts_only_the_given_classes():
    logits = torch.tensor([[9.0, 0.0, 2.0, -1.0], [9.0, 1.0, 0.0, 3.0]])  # 2 RoIs, K = 3, column 0 unused
    labels = torch.tensor([2, 0])  # class 2, background
    classes = torch.tensor([2, 3])

    def bce(x, t):
        return -(t * math.log(1 / (1 + math.exp(-x))) + (1 - t) * math.log(1 - 1 / (1 + math.exp(-x))))

    # RoI 0: class 2 target 1 (logit 2), class 3 target 0 (logit -1); RoI 1: both 0 (logits 0, 3)
    expected = (bce(2.0, 1) + bce(-1.0, 0) + bce(0.0, 0) + bce(3.0, 0)) / 2
    got = float(federated_loss(logits, labels, classes))
    assert abs(got - expected) <= 8 * torch.finfo(torch.float32).eps * expected


def test_every_present_class_counts_and_negatives_follow_the_weights():
    weights = class_weights(torch.tensor([1.0, 100.0, 4.0, 0.0, 25.0]))  # sqrt: 1, 10, 2, 1 (clamped), 5
    torch.testing.assert_close(weights, torch.tensor([1.0, 10.0, 2.0, 1.0, 5.0], dtype=torch.float64))
    labels = torch.tensor([0, 3, 3, 0])
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(6)
    trials = 4000
    for _ in range(trials):
        classes = federated_classes(labels, weights, num_classes=2, generator=gen)
        assert 3 in classes.tolist() and len(classes) == 2 and 0 not in classes.tolist()
        counts[classes] += 1
    # one negative drawn among classes 1, 2, 4, 5 with weights 1, 10, 1, 5 (class 3 is present)
    expected = torch.tensor([1.0, 10.0, 1.0, 5.0]) / 17
    observed = counts[[1, 2, 4, 5]] / trials
    assert ((observed - expected).abs() <= 5 * (expected * (1 - expected) / trials).sqrt()).all()


def test_no_sampling_when_the_batch_already_has_enough_classes():
    classes = federated_classes(torch.tensor([1, 2, 3, 0]), torch.ones(5), num_classes=2)
    assert sorted(classes.tolist()) == [1, 2, 3]


def test_sigmoid_scores_replace_the_softmax():
    from maskrcnn.model.box_head import class_scores

    logits = torch.tensor([[5.0, 0.0, -2.0], [0.0, 1.0, 1.0]])
    sig = class_scores(logits, "sigmoid")
    torch.testing.assert_close(sig[:, 1:], torch.sigmoid(logits[:, 1:]))
    assert (sig[:, 0] == 0).all()  # background has no score of its own
    torch.testing.assert_close(class_scores(logits, "softmax"), torch.softmax(logits, -1))

