"""The rule for "same outputs": used by the packaging parity check and by the agent's golden check."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Float outputs must agree within ATOL + RTOL * |reference|; boolean outputs (masks) may differ in at most
# MAX_MASK_MISMATCH of their elements, since a value within float rounding of the threshold can flip.
ATOL = 1e-3
RTOL = 1e-3
MAX_MASK_MISMATCH = 1e-3


@dataclass(frozen=True)
class ParityReport:
    """Worst differences per output; `ok` when every output is within tolerance."""

    max_abs_error: dict[str, float]
    mismatch_fraction: dict[str, float]
    failures: list[str]

    @property
    def ok(self) -> bool:
        return not self.failures


def compare(
    reference: dict[str, np.ndarray],
    candidate: dict[str, np.ndarray],
    atol: float = ATOL,
    rtol: float = RTOL,
    max_mask_mismatch: float = MAX_MASK_MISMATCH,
) -> ParityReport:
    """Compare outputs by name."""
    max_abs, mismatch, failures = {}, {}, []
    for name, ref in reference.items():
        got = candidate.get(name)
        if got is None or got.shape != ref.shape:
            failures.append(f"output '{name}': expected shape {ref.shape}, got {None if got is None else got.shape}")
            continue
        if ref.dtype == np.bool_:
            frac = float(np.mean(ref != got.astype(bool)))
            mismatch[name] = frac
            if frac > max_mask_mismatch:
                failures.append(f"output '{name}': {frac:.4%} of elements differ (allowed {max_mask_mismatch:.2%})")
            continue
        err = np.abs(got.astype(np.float64) - ref.astype(np.float64))
        max_abs[name] = float(err.max(initial=0.0))
        bound = atol + rtol * np.abs(ref.astype(np.float64))
        if np.any(err > bound):
            failures.append(f"output '{name}': max |error| {max_abs[name]:.3g} exceeds {atol} + {rtol}·|reference|")
    return ParityReport(max_abs, mismatch, failures)
