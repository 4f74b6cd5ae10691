"""Seeded sampling (identities, shuffles, per-sample augmentation seeds) and the
distributed helpers, in one process and in two (gloo)."""
import datetime
import os
import time
from collections import Counter
from unittest import mock

import pytest
import torch

from msinet_reid import distributed
from msinet_reid.data.loading import SeededItems, resumable_loader
from msinet_reid.random_state import seeded
from msinet_reid.data.samplers import IdentitySampler, SeededBatches, ShuffleSampler

from helpers import run_distributed

# 12 identities with 1 to 6 images each.
DATA = [(f'img{pid}_{i}.jpg', pid, i % 2) for pid in range(12) for i in range(pid % 6 + 1)]


def pids(indices):
    return [DATA[i][1] for i in indices]


def test_batches_hold_p_identities_of_k_images():
    sampler = IdentitySampler(DATA, batch_size=8, num_instances=2, seed=0)
    plan = sampler.epoch_plan()
    assert len(plan) >= 2
    for batch in plan:
        assert sorted(Counter(pids(batch)).values()) == [2, 2, 2, 2]
    assert list(sampler) == [i for batch in plan for i in batch]
    assert len(sampler) == 8 * len(plan)
    # Identities with enough images never repeat an image within an epoch.
    drawn = [i for batch in plan for i in batch if DATA[i][1] % 6 >= 1]
    assert len(drawn) == len(set(drawn))


def test_order_depends_only_on_seed_and_epoch():
    a, b = IdentitySampler(DATA, 8, 2, seed=3), IdentitySampler(DATA, 8, 2, seed=3)
    assert list(a) == list(b)
    b.set_epoch(1)
    assert list(a) != list(b)
    a.set_epoch(1)
    assert list(a) == list(b)
    assert list(IdentitySampler(DATA, 8, 2, seed=4)) != list(IdentitySampler(DATA, 8, 2, seed=3))


@pytest.mark.parametrize('world_size', [2, 3])
def test_replicas_split_each_global_batch_by_identity(world_size):
    plan = IdentitySampler(DATA, 12, 2, seed=1).epoch_plan()
    shards = [list(IdentitySampler(DATA, 12, 2, seed=1, num_replicas=world_size, rank=r))
              for r in range(world_size)]
    local = 12 // world_size
    assert {len(shard) for shard in shards} == {local * len(plan)}
    for step, batch in enumerate(plan):
        parts = [shard[step * local:(step + 1) * local] for shard in shards]
        assert sum(parts, []) == batch  # together: the single-process batch
        assert all(len(set(pids(a)) & set(pids(b))) == 0 for a in parts for b in parts if a != b)


def test_shuffles_cover_every_sample_once_and_shard_global_batches():
    plan = ShuffleSampler(10, 4, seed=2).epoch_plan()
    assert len(plan) == 2 and len({i for batch in plan for i in batch}) == 8
    other = ShuffleSampler(10, 4, seed=2)
    other.set_epoch(1)
    assert other.epoch_plan() != plan
    shards = [ShuffleSampler(10, 4, seed=2, num_replicas=2, rank=r).own_batches() for r in (0, 1)]
    assert [a + b for a, b in zip(*shards)] == plan
    with pytest.raises(ValueError, match='must divide evenly over 3'):
        ShuffleSampler(10, 4, num_replicas=3)
    with pytest.raises(ValueError, match='needs as many samples, but the data has 3'):
        ShuffleSampler(3, 4)


@pytest.mark.parametrize('world_size', [1, 2])
def test_augmentation_seeds_follow_the_place_in_the_global_epoch(world_size):
    single = SeededBatches(IdentitySampler(DATA, 8, 2, seed=1))
    single.set_epoch(3)
    shards = [SeededBatches(IdentitySampler(DATA, 8, 2, seed=1, num_replicas=world_size,
                                            rank=r)) for r in range(world_size)]
    for shard in shards:
        shard.set_epoch(3, start=1)
    # Any number of processes, and a start at batch 1: the pairs of the single process.
    assert [sum(parts, []) for parts in zip(*shards)] == list(single)[1:]
    assert len(shards[0]) == single.num_batches - 1
    assert len({seed for batch in single for _, seed in batch}) == 8 * single.num_batches
    with pytest.raises(ValueError, match='cannot start at batch 99'):
        single.set_epoch(3, start=99)


class RandomItems(torch.utils.data.Dataset):
    """Item ``i`` is ``i`` and a random draw, as an augmented image would be."""

    def __len__(self):
        return len(DATA)

    def __getitem__(self, index):
        return {'index': index, 'noise': torch.rand(())}


def test_resumable_loader_batches_depend_on_nothing_the_process_draws():
    # (With loader workers, in other processes: tests/test_preemption.py. Forking workers
    # here, in a process that ran inductor's compile threads, made a later mp.spawn crash.)
    def batches():
        loader = resumable_loader(RandomItems(), IdentitySampler(DATA, 8, 2, seed=1))
        loader.batch_sampler.set_epoch(2)
        return [(b['index'].tolist(), b['noise'].tolist()) for b in loader]

    torch.manual_seed(0)
    reference = batches()
    torch.rand(5)
    state = torch.get_rng_state()
    assert batches() == reference
    assert torch.equal(torch.get_rng_state(), state)  # the process's draws are untouched
    with pytest.raises(TypeError):
        SeededItems(RandomItems())[3]  # needs (index, seed)


def test_seeding_an_item_leaves_the_devices_alone(monkeypatch):
    # torch.manual_seed also queues a seeding of each lazily initialised device (CUDA,
    # XPU), formatting the Python stack under a lock: a cost for every image, and a lock
    # that a forked loader worker can inherit held (it deadlocked one).
    def no_stacks(*args, **kwargs):
        raise AssertionError('an item seeding formatted the stack')

    monkeypatch.setattr('traceback.format_stack', no_stacks)
    with seeded(7):
        torch.rand(1)


@pytest.mark.parametrize('kwargs, message', [
    (dict(batch_size=6, num_instances=4), 'multiple of num_instances'),
    (dict(batch_size=32, num_instances=2), 'needs 16 identities, but the data has 12'),
    (dict(batch_size=8, num_instances=2, num_replicas=2, rank=2), 'rank must be in 0..1'),
    (dict(batch_size=6, num_instances=2, num_replicas=2), 'cannot be split evenly over 2'),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        IdentitySampler(DATA, **kwargs)


def test_single_process_helpers_are_local():
    info = distributed.init_distributed()
    assert (info.rank, info.world_size, info.is_main) == (0, 1, True)
    x = torch.randn(3, 2, requires_grad=True)
    assert distributed.all_gather_with_grad(x) is x
    with distributed.main_process_first():
        pass


def _check_gather(info, tmp_path):
    assert info.world_size == 2 and info.device.type == 'cpu'
    x = torch.full((2, 3), float(info.rank + 1), requires_grad=True)
    gathered = distributed.all_gather_with_grad(x)
    assert gathered[:, 0].tolist() == [1, 1, 2, 2]
    gathered.sum().backward()  # only this process's rows carry gradient
    assert torch.equal(x.grad, torch.ones(2, 3))
    # Averaged in flat buckets: one all_reduce per dtype when they fit, each tensor's mean.

    def tensors():
        return [torch.full((3, 2), float(info.rank)), torch.arange(5.0) * (info.rank + 1),
                torch.full((4,), float(info.rank), dtype=torch.float64)]

    expected = [torch.full((3, 2), 0.5), torch.arange(5.0) * 1.5,
                torch.full((4,), 0.5, dtype=torch.float64)]
    for bucket_bytes, calls in ((distributed.BUCKET_BYTES, 2), (24, 3)):
        averaged = tensors()
        with mock.patch.object(torch.distributed, 'all_reduce',
                               wraps=torch.distributed.all_reduce) as all_reduce:
            distributed.all_reduce_mean(averaged, bucket_bytes)
        assert all_reduce.call_count == calls
        assert all(torch.equal(a, e) for a, e in zip(averaged, expected))
    # Rank 0 works alone inside main_process_first: while it is in the block, rank 1's
    # arrival is never seen; afterwards rank 1 finds what rank 0 wrote.
    store = torch.distributed.FileStore(str(tmp_path / 'store'), 2)
    with distributed.main_process_first():
        marker = tmp_path / 'written-by-rank-0'
        if info.is_main:
            with pytest.raises(RuntimeError, match='[Tt]imeout|timed out'):
                store.wait(['rank-1-inside'], datetime.timedelta(seconds=2))
            marker.write_text('done')
        else:
            store.set('rank-1-inside', '1')
        assert marker.read_text() == 'done'


@pytest.mark.slow
def test_two_processes_gather_and_wait_for_rank_0(tmp_path):
    run_distributed(_check_gather, tmp_path)


def _check_dead_peer_fails(info, tmp_path):
    if info.rank == 1:
        os._exit(0)  # dies without a word, as a killed process would
    started = time.monotonic()
    with pytest.raises(RuntimeError):
        distributed.barrier()
        distributed.all_gather(torch.ones(1))
    # Far sooner than the group's 30-minute timeout: gloo sees the connection close.
    (tmp_path / 'rank-0-raised').write_text(f'{time.monotonic() - started:.1f}')


@pytest.mark.slow
def test_a_dead_process_makes_the_others_fail_instead_of_hanging(tmp_path):
    run_distributed(_check_dead_peer_fails, tmp_path)
    assert float((tmp_path / 'rank-0-raised').read_text()) < 60
