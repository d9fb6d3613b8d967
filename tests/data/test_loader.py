"""Training loader: aspect-ratio grouping, sharding across processes, seeded data order."""

import torch
from torch.utils.data import Dataset

from maskrcnn.data.loader import GroupedBatches, ShardedBatches, build_train_loader, derive_seed


def _take(iterable, n):
    out = []
    for item in iterable:
        out.append(item)
        if len(out) == n:
            return out


def _perm(n, seed):
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


def test_epoch_order_is_a_seeded_permutation():
    batches = _take(GroupedBatches(6, 2, seed=3), 6)  # two epochs of 6 images
    epoch0 = [i for b in batches[:3] for (e, i) in b]
    epoch1 = [i for b in batches[3:] for (e, i) in b]
    assert sorted(epoch0) == sorted(epoch1) == list(range(6))
    assert {e for b in batches[:3] for (e, _) in b} == {0}
    # the independent truth: randperm from a generator seeded by (seed, epoch)
    assert epoch0 == _perm(6, derive_seed(3, 0))
    assert epoch1 == _perm(6, derive_seed(3, 1))
    assert _take(GroupedBatches(6, 2, seed=4), 3) != batches[:3]  # the seed matters


def test_batches_never_mix_orientations():
    ratios = [1.5, 0.5, 1.0, 0.7, 2.0, 0.6, 1.2, 0.8, 0.9]  # 4 wide (>= 1), 5 tall
    batches = _take(GroupedBatches(len(ratios), 2, seed=0, aspect_ratios=ratios), 20)
    for batch in batches:
        assert len({ratios[i] >= 1 for _, i in batch}) == 1
    # each image is used exactly once per epoch; the odd tall image waits for a partner from
    # the next epoch instead of being dropped
    first = [i for b in batches for (e, i) in b if e == 0]
    assert sorted(first) == list(range(len(ratios)))
    assert any({e for e, _ in b} == {0, 1} for b in batches)


def test_shards_partition_each_global_batch():
    batches = GroupedBatches(10, 4, seed=1)
    whole = _take(ShardedBatches(batches, start_iter=0, rank=0, world_size=1), 5)
    shards = [_take(ShardedBatches(batches, 0, rank, 2), 5) for rank in (0, 1)]
    for it in range(5):
        assert shards[0][it] + shards[1][it] == whole[it]  # same keys, same positions
        assert [k[:2] for k in whole[it]] == [(it, p) for p in range(4)]


def test_start_iter_continues_the_same_stream():
    batches = GroupedBatches(7, 3, seed=5, aspect_ratios=[1, 0.5] * 3 + [2])
    whole = _take(ShardedBatches(batches, 0, 0, 1), 9)
    resumed = _take(ShardedBatches(batches, 4, 0, 1), 5)
    assert resumed == whole[4:]


class _Flippy(Dataset):
    """Image = its index; the target records a draw from torch's global RNG (like a flip)."""

    def __len__(self):
        return 5

    def __getitem__(self, index):
        return torch.full((3, 4, 4), float(index)), {"draw": torch.rand(()).item()}


def test_loader_collates_and_seeds_per_sample():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    kw = dict(batch_size=2, seed=9)
    (images, targets), = _take(build_train_loader(_Flippy(), **kw), 1)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's RNG is untouched
    assert len(images) == len(targets) == 2 and images[0].shape == (3, 4, 4)
    perm = _perm(5, derive_seed(9, 0))
    for pos, (image, target) in enumerate(zip(images, targets)):
        index = perm[pos]
        assert image[0, 0, 0].item() == index
        assert target["seed"] == derive_seed(9, 0, pos)  # (seed, iteration, position)
        torch.manual_seed(derive_seed(9, 0, index))  # (seed, epoch, index)
        assert target["draw"] == torch.rand(()).item()
    # two worker processes give the very same batches as the main process
    in_workers = _take(build_train_loader(_Flippy(), num_workers=2, **kw), 3)
    in_main = _take(build_train_loader(_Flippy(), **kw), 3)
    for (ia, ta), (ib, tb) in zip(in_workers, in_main):
        assert all(torch.equal(a, b) for a, b in zip(ia, ib)) and ta == tb
