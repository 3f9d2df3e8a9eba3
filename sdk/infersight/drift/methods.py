"""Which way each drift statistic points, so every feature gets a verdict where 1 = drifted.

evidently reports p-values for hypothesis tests (drift when the p-value is *below* the
threshold) and distances for the others (drift when the distance is *at or above* it). The
``drift_score`` gauge keeps the statistic as evidently reports it; ``drift_feature_drifted``
is this module's normalised verdict, so "higher is worse" holds for every method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["Direction", "MethodRule", "is_drifted", "rule_for"]

Direction = Literal["lower", "higher"]


@dataclass(frozen=True)
class MethodRule:
    """``lower``: drifted when score < threshold (p-values); ``higher``: when score >= it.

    ``at_threshold`` is the verdict when the score equals the threshold, as evidently decides
    it: K-S and Cramer-von Mises use ``<=``, energy distance ``>``.
    """

    direction: Direction
    at_threshold: bool

    def drifted(self, score: float, threshold: float) -> bool:
        if score == threshold:
            return self.at_threshold
        return score < threshold if self.direction == "lower" else score > threshold


# Keyed by the name evidently prints (``StatTest.display_name``) and by its short name, both
# as in evidently 0.7 (legacy/calculations/stattests/*.py).
_RULES: dict[str, MethodRule] = {}
_P = MethodRule("lower", at_threshold=False)  # p-value: drift when p < threshold
_P_INCL = MethodRule("lower", at_threshold=True)  # p <= threshold
_D = MethodRule("higher", at_threshold=True)  # distance: drift when d >= threshold
_D_EXCL = MethodRule("higher", at_threshold=False)  # d > threshold


def _add(names: tuple[str, ...], rule: MethodRule) -> None:
    for name in names:
        _RULES[name.lower()] = rule


_add(("K-S p_value", "ks"), _P_INCL)
_add(("Cramer-von Mises", "cramer_von_mises"), _P_INCL)
_add(("chi-square p_value", "chisquare"), _P)
_add(("Z-test p_value", "z"), _P)
_add(("Anderson-Darling", "anderson"), _P)
_add(("Epps-Singleton", "es"), _P)
_add(("Fisher's Exact test", "fisher_exact"), _P)
_add(("g_test",), _P)
_add(("Mann-Whitney U-rank test", "mannw"), _P)
_add(("empirical_mmd",), _P)
_add(("t_test",), _P)
_add(("Total-Variation-Distance", "TVD"), _P)  # evidently returns a p-value
_add(("Wasserstein distance (normed)", "wasserstein"), _D)
_add(("Jensen-Shannon distance", "jensenshannon"), _D)
_add(("PSI", "psi"), _D)
_add(("Kullback-Leibler divergence", "kl_div"), _D)
_add(("Hellinger distance", "hellinger"), _D)
_add(("Energy-distance", "ed"), _D_EXCL)
_add(("Percentile text content drift", "perc_text_content_drift"), _D)
_add(("Absolute text content drift", "abs_text_content_drift"), _D)


def rule_for(method: str) -> MethodRule:
    """The rule of a method; an unknown one is a p-value if its name says so, else a distance."""
    rule = _RULES.get(method.lower())
    if rule is not None:
        return rule
    low = method.lower()
    if "p_value" in low or "p-value" in low or "test" in low:
        return _P
    return _D


def is_drifted(method: str, score: float, threshold: float) -> bool:
    """The normalised verdict. A NaN score (a degenerate column) is never drift."""
    if math.isnan(score) or math.isnan(threshold):
        return False
    return rule_for(method).drifted(score, threshold)
