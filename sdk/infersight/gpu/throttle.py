"""Clock-throttle (NVML "clocks event") reasons: the bitmask decoded into ``reason`` labels."""

from __future__ import annotations

__all__ = ["REASONS", "decode"]

# nvmlClocksEventReason* bits (nvml.h). Names follow NVML's, snake_cased; the alert rules in
# prometheus-rules/gpu.rules.yaml match on them.
REASONS: tuple[tuple[str, int], ...] = (
    ("gpu_idle", 0x001),
    ("applications_clocks_setting", 0x002),
    ("sw_power_cap", 0x004),
    ("hw_slowdown", 0x008),
    ("sync_boost", 0x010),
    ("sw_thermal_slowdown", 0x020),
    ("hw_thermal_slowdown", 0x040),
    ("hw_power_brake_slowdown", 0x080),
    ("display_clock_setting", 0x100),
)


def decode(mask: int) -> dict[str, int]:
    """Every known reason with 1 if its bit is set in ``mask``, else 0 (so series never vanish)."""
    return {name: 1 if mask & bit else 0 for name, bit in REASONS}
