"""The device speed probe: the reference computation, the probe's schedule and report, and
what the agent records and says with it."""

import logging

import numpy as np
import onnxruntime as ort

from profilers import stability
from profilers.stability import SpeedProbe, reference_model
from tests.profilers.test_agent import FakeServer, _agent


class FakeClock:
    """A nanosecond clock that moves only when told; each reference run takes ``run_ms``."""

    def __init__(self) -> None:
        self.now = 0
        self.run_ms = 1.0

    def __call__(self) -> int:
        return self.now

    def run(self) -> None:
        self.now += int(self.run_ms * 1e6)

    def wait(self, seconds: float) -> None:
        self.now += int(seconds * 1e9)


def _profile_with(probe_factory, tmp_path, monkeypatch, caplog):
    """One profiling job with ``probe_factory`` as the agent's SpeedProbe: its result, its log."""
    monkeypatch.setattr("profilers.agent.SpeedProbe", probe_factory)
    server = FakeServer(jobs=1)
    with caplog.at_level(logging.WARNING, logger="profilers.agent"):
        assert _agent(server, tmp_path).run(once=True) == 1
    (result,) = server.results.values()
    assert set(result["timings"]) == set(server.parts)  # every part, whatever the probe did
    return result, caplog.text


def test_the_reference_is_a_fixed_matrix_product_onnxruntime_runs():
    model = reference_model()
    assert model == reference_model()  # the same computation on every device
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).random((stability.SIZE, stability.SIZE), dtype=np.float32)
    (y,) = session.run(None, {"x": x})
    w = np.random.default_rng(0).random((stability.SIZE, stability.SIZE), dtype=np.float32)
    np.testing.assert_allclose(y, x @ w, rtol=1e-4)


def test_a_probe_times_the_reference_and_reports_the_spread_of_its_medians():
    clock = FakeClock()
    probe = SpeedProbe(every_seconds=30.0, clock=clock, run=clock.run)
    assert probe.report() is None  # no probe yet
    assert probe.probe() == 1.0
    assert probe.report() is None  # one probe: no spread
    clock.wait(10)
    clock.run_ms = 1.1  # the device got 10 % slower
    probe.probe()
    report = probe.report()
    assert report["medians_ms"] == [1.0, 1.1]
    assert report["spread_pct"] == 7.92  # 90th over 10th percentile: 1.09 / 1.01
    assert report["reference"] == stability.REFERENCE and report["runs"] == stability.RUNS
    assert report["at_s"][0] < report["at_s"][1]


def test_one_probe_caught_in_a_burst_does_not_make_a_drift():
    clock = FakeClock()
    probe = SpeedProbe(clock=clock, run=clock.run)
    for ms in [1.0, 1.002, 0.998, 1.3, 1.001, 0.999, 1.0, 1.002, 0.998, 1.0, 1.001]:
        clock.run_ms = ms
        probe.probe()
    assert probe.report()["spread_pct"] < 1  # the slowest over the fastest: 30 %
    for ms in [1.02, 1.04, 1.06, 1.08, 1.1, 1.12]:  # then the device slows down for good
        clock.run_ms = ms
        probe.probe()
    assert probe.report()["spread_pct"] > 8


def test_maybe_probes_only_once_the_interval_has_passed():
    clock = FakeClock()
    probe = SpeedProbe(every_seconds=30.0, clock=clock, run=clock.run)
    probe.maybe()  # nothing yet: probes at once
    probe.maybe()
    assert len(probe.medians_ms) == 1
    clock.wait(29)
    probe.maybe()
    assert len(probe.medians_ms) == 1
    clock.wait(2)
    probe.maybe()
    assert len(probe.medians_ms) == 2


def test_on_a_slow_device_the_probes_take_at_most_their_share_of_the_time():
    clock = FakeClock()
    clock.run_ms = 100.0  # a probe: 72 runs, 7.2 s
    probe = SpeedProbe(every_seconds=30.0, clock=clock, run=clock.run)
    probe.maybe()
    clock.wait(31)
    probe.maybe()
    assert len(probe.medians_ms) == 1  # 7.2 s every 31 s would be 23 % of the time
    clock.wait(7.2 / stability.MAX_SHARE - 31)
    probe.maybe()
    assert len(probe.medians_ms) == 2


def test_the_agent_records_the_devices_speed_in_the_profile(tmp_path):
    server = FakeServer(jobs=1)
    assert _agent(server, tmp_path).run(once=True) == 1
    (result,) = server.results.values()
    speed = result["context"]["speed"]
    assert len(speed["medians_ms"]) >= 2  # at the start and at the end at least
    assert all(m > 0 for m in speed["medians_ms"])
    assert speed["spread_pct"] >= 0


def test_no_probe_when_turned_off(tmp_path):
    server = FakeServer(jobs=1)
    assert _agent(server, tmp_path, speed_probe_seconds=0).run(once=True) == 1
    (result,) = server.results.values()
    assert "speed" not in result["context"]


def test_the_agent_warns_when_the_device_drifted_beyond_the_target(tmp_path, monkeypatch, caplog):
    clock = FakeClock()

    def drifting(**kwargs):
        probe = SpeedProbe(**kwargs, clock=clock, run=clock.run)
        real = probe.probe

        def slower() -> float:
            clock.run_ms *= 1.05  # 5 % slower at every probe
            return real()

        probe.probe = slower
        return probe

    result, log = _profile_with(drifting, tmp_path, monkeypatch, caplog)
    assert result["context"]["speed"]["spread_pct"] > 2
    assert "the device's speed moved" in log


def test_a_steady_device_gives_no_warning(tmp_path, monkeypatch, caplog):
    clock = FakeClock()

    def steady(**kwargs):
        return SpeedProbe(**kwargs, clock=clock, run=clock.run)

    result, log = _profile_with(steady, tmp_path, monkeypatch, caplog)
    assert result["context"]["speed"]["spread_pct"] == 0
    assert "speed moved" not in log


def test_a_clock_too_coarse_for_the_reference_gives_no_spread():
    clock = FakeClock()
    clock.run_ms = 0.0
    probe = SpeedProbe(clock=clock, run=clock.run)
    probe.probe()
    probe.probe()
    assert probe.report()["spread_pct"] is None


def test_a_failing_probe_costs_the_profile_nothing(tmp_path, monkeypatch, caplog):
    def failing_later(**kwargs):
        calls = []

        def run():
            calls.append(1)
            if len(calls) > stability.WARMUP_RUNS + stability.RUNS:  # after the first probe
                raise RuntimeError("reference broke")

        clock = FakeClock()
        return SpeedProbe(**kwargs | {"every_seconds": 0.0}, clock=clock, run=run)

    result, log = _profile_with(failing_later, tmp_path, monkeypatch, caplog)
    assert "speed" not in result["context"]
    assert "speed probe stopped (reference broke)" in log


def test_a_probe_that_cannot_start_costs_the_profile_nothing(tmp_path, monkeypatch, caplog):
    def broken(**kwargs):
        raise RuntimeError("no MatMul here")

    result, log = _profile_with(broken, tmp_path, monkeypatch, caplog)
    assert "speed" not in result["context"]
    assert "no speed probe (no MatMul here)" in log
