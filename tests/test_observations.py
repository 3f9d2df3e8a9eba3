"""The worker's summed observations leave prometheus_client as per-call observations would."""

from __future__ import annotations

import math
import random

from prometheus_client import CollectorRegistry, Counter, Histogram

from infersight._observations import ObservationBatch, exemplar_labels
from infersight.conventions import LATENCY_BUCKETS


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], tuple[float, object]]:
    out = {}
    for family in registry.collect():
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            exemplar = (s.exemplar.labels, s.exemplar.value) if s.exemplar else None
            out[(s.name, tuple(sorted(s.labels.items())))] = (s.value, exemplar)
    return out


def _pair() -> tuple[CollectorRegistry, Histogram, CollectorRegistry, Histogram]:
    direct_reg, batched_reg = CollectorRegistry(), CollectorRegistry()
    direct = Histogram("t_seconds", "", ["stage"], buckets=LATENCY_BUCKETS, registry=direct_reg)
    batched = Histogram("t_seconds", "", ["stage"], buckets=LATENCY_BUCKETS, registry=batched_reg)
    return direct_reg, direct, batched_reg, batched


def test_summed_histograms_match_per_call_observe() -> None:
    direct_reg, direct, batched_reg, batched = _pair()
    batch = ObservationBatch()
    rng = random.Random(7)
    # Bucket bounds exactly (the bound's own bucket), beyond the last bound, zero, negatives.
    amounts = [*LATENCY_BUCKETS[:-1], 0.0, -1.0, 1e9, math.inf] + [rng.expovariate(20) for _ in range(500)]
    for n, amount in enumerate(amounts):
        stage = ("pre", "model")[n % 2]
        ids = (rng.getrandbits(128), rng.getrandbits(64)) if n % 3 else None
        direct.labels(stage).observe(amount, exemplar_labels(ids) if ids else None)
        batch.observe(batched.labels(stage), amount, ids)
    assert _samples(batched_reg) != _samples(direct_reg)  # nothing written before the flush
    batch.flush()
    got, want = _samples(batched_reg), _samples(direct_reg)
    assert got.keys() == want.keys()
    for key, (value, exemplar) in want.items():
        assert math.isclose(got[key][0], value, rel_tol=1e-9), key
        assert got[key][1] == exemplar, key


def test_nan_is_observed_as_prometheus_client_does() -> None:
    direct_reg, direct, batched_reg, batched = _pair()
    batch = ObservationBatch()
    batch.observe(batched.labels("pre"), 0.01, None)
    batch.observe(batched.labels("pre"), math.nan, None)
    direct.labels("pre").observe(0.01)
    direct.labels("pre").observe(math.nan)
    batch.flush()
    got, want = _samples(batched_reg), _samples(direct_reg)
    for key, (value, _) in want.items():
        assert got[key][0] == value or (math.isnan(value) and math.isnan(got[key][0])), key


def test_counters_sum_and_keep_the_last_exemplar() -> None:
    registry = CollectorRegistry()
    counter = Counter("over_slo", "", ["model"], registry=registry)
    batch = ObservationBatch()
    for span in range(1, 4):
        batch.count(counter.labels("m"), (5, span))
    batch.count(counter.labels("m"), None)
    assert registry.get_sample_value("over_slo_total", {"model": "m"}) == 0
    batch.flush()
    assert registry.get_sample_value("over_slo_total", {"model": "m"}) == 4
    [sample] = [s for f in registry.collect() for s in f.samples if s.name == "over_slo_total"]
    assert sample.exemplar is not None and sample.exemplar.labels == exemplar_labels((5, 3))
    batch.flush()  # nothing pending: writes nothing twice
    assert registry.get_sample_value("over_slo_total", {"model": "m"}) == 4


def test_sums_carried_over_many_flushes_match_per_call_observe() -> None:
    """A series' pending sums live across flushes: each flush writes only what came since the
    last one, and a bucket's exemplar only when one was observed since."""
    direct_reg, direct, batched_reg, batched = _pair()
    batch = ObservationBatch()
    rng = random.Random(11)
    for round_ in range(20):
        for n in range(rng.randrange(0, 8)):
            stage = ("pre", "model", "post")[(round_ + n) % 3]
            amount = rng.expovariate(30)
            ids = (rng.getrandbits(128), rng.getrandbits(64)) if rng.random() < 0.5 else None
            direct.labels(stage).observe(amount, exemplar_labels(ids) if ids else None)
            batch.observe(batched.labels(stage), amount, ids)
        batch.flush()
        got, want = _samples(batched_reg), _samples(direct_reg)
        assert got.keys() == want.keys()
        for key, (value, exemplar) in want.items():
            assert math.isclose(got[key][0], value, rel_tol=1e-9, abs_tol=1e-12), (round_, key)
            assert got[key][1] == exemplar, (round_, key)


def test_a_forked_child_forgets_the_parents_pending_sums() -> None:
    """What the parent summed but had not written when it forked is the parent's to write."""
    registry = CollectorRegistry()
    hist = Histogram("t_seconds", "", ["stage"], buckets=LATENCY_BUCKETS, registry=registry)
    count = Counter("c", "", registry=registry)
    batch = ObservationBatch()
    batch.observe(hist.labels("model"), 0.01, (1, 2))
    batch.count(count, None)
    batch.flush()
    written = _samples(registry)
    batch.observe(hist.labels("model"), 0.5, (3, 4))  # pending at the fork
    batch.count(count, (3, 4))
    batch.forget_pending()
    batch.flush()
    assert _samples(registry) == written
    batch.observe(hist.labels("model"), 0.01, None)  # the child's own observations still count
    batch.flush()
    after = _samples(registry)
    assert after[("t_seconds_count", (("stage", "model"),))][0] == 2.0
