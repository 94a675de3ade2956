"""``bench/search.py --shards N``: the shards' times next to the unsharded run, merge checked."""

import argparse

from bench import search as bench_search
from mess.search import compute_front
from mess.testing import random_costs, random_stats


def test_shards_are_timed_and_their_merge_checked(capsys):
    stats = random_stats(num_samples=20, num_classes=3, positions=3, heads=2, seed=1)
    costs = random_costs(stats, seed=1)
    whole = compute_front(stats, costs, max_exits=2)
    out = bench_search._sharded(
        argparse.Namespace(shards=3),
        whole,
        1.0,
        lambda shard: compute_front(stats, costs, max_exits=2, shard=shard),
    )
    assert out["identical"] is True
    assert out["shards"] == 3 and len(out["shard_seconds"]) == 3
    assert sum(out["shard_configurations"]) == whole.configs_evaluated
    assert out["max_seconds"] <= out["sum_seconds"]
    bench_search._print_sharded(out)
    assert "shards, max" in capsys.readouterr().out
