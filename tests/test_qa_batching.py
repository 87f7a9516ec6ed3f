"""Question answering batches windows only where batching cannot lose to one pair at a time: the rule of
:func:`engine.tasks.qa.padding_aware_batches` (its padding never exceeds the forward passes it saves), not its speed."""
from __future__ import annotations

import random

import pytest

from engine.tasks.qa import padding_aware_batches


def _check(lengths: list[int], batches: list[list[int]], max_batch: int, overhead: float) -> None:
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))  # every window once
    for b in batches:
        assert 1 <= len(b) <= max_batch
        padding = sum(max(lengths[j] for j in b) - lengths[j] for j in b)
        assert padding <= overhead * (len(b) - 1) + 1e-9  # batched cost <= one-at-a-time cost


def test_no_overhead_means_one_at_a_time_except_equal_lengths() -> None:
    lengths = [100, 120, 100, 90, 100]
    batches = padding_aware_batches(lengths, 32, 0.0)
    assert sorted(map(sorted, batches)) == [[0, 2, 4], [1], [3]]


def test_a_large_overhead_batches_everything_up_to_the_limit() -> None:
    lengths = list(range(50, 250, 2))  # 100 windows
    batches = padding_aware_batches(lengths, 32, 1e9)
    assert [len(b) for b in batches] == [32, 32, 32, 4]


@pytest.mark.parametrize("overhead", [0.0, 5.0, 40.0, 300.0])
def test_padding_never_exceeds_the_passes_saved(overhead: float) -> None:
    rng = random.Random(int(overhead))
    lengths = [rng.randint(60, 384) for _ in range(200)]
    batches = padding_aware_batches(lengths, 32, overhead)
    _check(lengths, batches, 32, overhead)
    if overhead >= 40:  # a real overhead does batch similar lengths together
        assert len(batches) < len(lengths) / 2
