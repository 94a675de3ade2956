"""numba is optional (extra ``fast``): without it the search runs on numpy, same answers."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mess.search import search
from mess.search.kernels import HAVE_NUMBA
from mess.testing import random_costs, random_stats

ROOT = Path(__file__).resolve().parents[2]

# a None entry in sys.modules makes `import numba` raise ImportError, as if not installed
WITHOUT_NUMBA = """
import json, sys
sys.modules["numba"] = None
from mess.search import resolve, search
from mess.search.kernels import HAVE_NUMBA
from mess.testing import random_costs, random_stats

stats = random_stats(num_samples=12, num_classes=3, positions=3, heads=2, seed=7)
costs = random_costs(stats, seed=7)
result = search(stats, costs, objective="pareto", image_thresholds=[0.2, 0.5, 0.8])
answer = result.to_json()
answer.pop("seconds")
print(json.dumps({"have_numba": HAVE_NUMBA, "resolved": resolve(), "answer": answer}))
"""


def _pareto_answer() -> dict:
    stats = random_stats(num_samples=12, num_classes=3, positions=3, heads=2, seed=7)
    costs = random_costs(stats, seed=7)
    result = search(stats, costs, objective="pareto", image_thresholds=[0.2, 0.5, 0.8])
    answer = result.to_json()
    answer.pop("seconds")
    return answer


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed: nothing to compare with")
def test_the_search_without_numba_runs_on_numpy_and_answers_as_numba_does():
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [sys.executable, "-c", WITHOUT_NUMBA],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    got = json.loads(out.stdout)
    assert got["have_numba"] is False
    assert got["resolved"] == ["cpu", "numpy"]
    assert got["answer"]["front"]  # a real front, not an empty answer
    assert got["answer"] == json.loads(json.dumps(_pareto_answer()))
