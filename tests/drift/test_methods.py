"""The per-feature verdict is normalised so 1 = drifted, whichever way the statistic points."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from infersight.drift.methods import is_drifted, rule_for

# scipy's notes on Anderson-Darling p-value capping are not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_p_values_drift_below_their_threshold() -> None:
    assert is_drifted("K-S p_value", 0.001, 0.05)
    assert not is_drifted("K-S p_value", 0.5, 0.05)
    assert is_drifted("chi-square p_value", 0.01, 0.05)
    assert not is_drifted("chi-square p_value", 0.2, 0.05)


def test_distances_drift_above_their_threshold() -> None:
    assert is_drifted("PSI", 0.3, 0.1)
    assert not is_drifted("PSI", 0.02, 0.1)
    assert is_drifted("Wasserstein distance (normed)", 0.4, 0.1)
    assert not is_drifted("Wasserstein distance (normed)", 0.01, 0.1)


def test_the_same_number_means_opposite_things_by_method() -> None:
    # 0.5 against a threshold of 0.1: a huge p-value (no drift) but a large distance (drift).
    assert not is_drifted("K-S p_value", 0.5, 0.1)
    assert is_drifted("Jensen-Shannon distance", 0.5, 0.1)


def test_equality_follows_evidently() -> None:
    assert is_drifted("K-S p_value", 0.05, 0.05)  # ks: p <= threshold
    assert not is_drifted("chi-square p_value", 0.05, 0.05)  # chisquare: p < threshold
    assert is_drifted("PSI", 0.1, 0.1)  # psi: d >= threshold
    assert not is_drifted("Energy-distance", 0.1, 0.1)  # ed: d > threshold


def test_nan_score_is_no_drift_and_unknown_methods_are_guessed_by_name() -> None:
    assert not is_drifted("K-S p_value", float("nan"), 0.05)
    assert rule_for("my custom p_value").direction == "lower"
    assert rule_for("my distance").direction == "higher"


def _stattests() -> list[tuple[object, str]]:
    from evidently.legacy.calculations import stattests as st

    numeric = [
        "ks_stat_test",
        "wasserstein_stat_test",
        "psi_stat_test",
        "kl_div_stat_test",
        "jensenshannon_stat_test",
        "anderson_darling_test",
        "cramer_von_mises",
        "mann_whitney_u_stat_test",
        "t_test",
        "energy_dist_test",
        "hellinger_stat_test",
        "epps_singleton_test",
    ]
    categorical = ["chi_stat_test", "z_stat_test", "tvd_test", "g_test", "fisher_exact_test"]
    out = [(getattr(st, n), "num") for n in numeric if hasattr(st, n)]
    out += [(getattr(st, n), "cat") for n in categorical if hasattr(st, n)]
    assert len(out) >= 12, "evidently's stattest names changed"
    return out


@pytest.mark.parametrize("shift", [0.0, 1.0])
def test_normalised_verdict_matches_evidentlys_own_decision(shift: float) -> None:
    """For every stattest evidently ships, our direction table agrees with evidently's own
    ``drifted`` flag on a same-distribution and a shifted pair of samples."""
    from evidently.legacy.core import ColumnType

    rng = np.random.default_rng(7)
    checked = 0
    for test, kind in _stattests():
        if kind == "num":
            ref = pd.Series(rng.normal(0, 1, 400))
            cur = pd.Series(rng.normal(shift, 1, 400))
            ctype = ColumnType.Numerical
        else:
            p = [0.5, 0.5] if shift == 0 else [0.9, 0.1]
            ref = pd.Series(rng.choice(["a", "b"], 400))
            cur = pd.Series(rng.choice(["a", "b"], 400, p=p))
            ctype = ColumnType.Categorical
        result = test(ref, cur, ctype, None)  # type: ignore[operator]
        name = test.display_name  # type: ignore[attr-defined]
        ours = is_drifted(name, float(result.drift_score), float(result.actual_threshold))
        assert ours == bool(result.drifted), (name, result)
        checked += 1
        if shift:
            assert result.drifted, name  # the shift is large: every test must see it
    assert checked >= 12
