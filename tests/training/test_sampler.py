import pytest

from futurelat.training.sampler import StepBatchSampler, batch_indices


def test_pure_function_of_seed_step_rank():
    kw = dict(batch_size=5, num_samples=23, world_size=2)
    a = batch_indices(7, seed=3, rank=1, **kw)
    assert a == batch_indices(7, seed=3, rank=1, **kw)
    assert a != batch_indices(7, seed=4, rank=1, **kw)
    assert a != batch_indices(8, seed=3, rank=1, **kw)
    assert len(a) == 5 and all(0 <= i < 23 for i in a)


def test_ranks_disjoint_and_union_matches_single_process():
    for step in range(6):
        r0 = batch_indices(step, batch_size=4, num_samples=40, seed=0, rank=0, world_size=2)
        r1 = batch_indices(step, batch_size=4, num_samples=40, seed=0, rank=1, world_size=2)
        assert not set(r0) & set(r1)
        assert r0 + r1 == batch_indices(step, batch_size=8, num_samples=40, seed=0)


def test_each_epoch_visits_every_sample_once_and_epochs_differ():
    n, b = 12, 5  # batches straddle epoch boundaries
    stream = [i for s in range(12) for i in batch_indices(s, batch_size=b, num_samples=n, seed=1)]
    epochs = [stream[k:k + n] for k in range(0, len(stream), n)]
    assert all(sorted(e) == list(range(n)) for e in epochs)
    assert epochs[0] != epochs[1]


def test_batch_sampler_resume_equals_uninterrupted():
    full = list(StepBatchSampler(30, 4, seed=2, start=0, stop=10, rank=1, world_size=3))
    tail = StepBatchSampler(30, 4, seed=2, start=6, stop=10, rank=1, world_size=3)
    assert len(tail) == 4 and list(tail) == full[6:]


@pytest.mark.parametrize("kw", [dict(num_samples=0), dict(batch_size=0), dict(rank=2),
                                dict(seed=-1)])
def test_bad_arguments(kw):
    args = dict(batch_size=2, num_samples=10, seed=0, rank=0, world_size=2)
    args.update(kw)
    with pytest.raises(ValueError):
        batch_indices(0, **args)
