"""Tolerances for float comparisons, worked out from the arithmetic rather than from what one
processor printed.

Two evaluations of one sum of ``n`` terms in different orders (another chunking, batch split,
thread count or SIMD width) each lie within ``γ_n·Σ|terms|`` of the exact sum, ``γ_n = n·u/(1 − n·u)``
with ``u`` the unit roundoff (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed.,
Lemma 3.1 and §4.2), so they differ by at most ``2·γ_n·Σ|terms|``. That bound holds for any order
and any processor, which is what a test that must pass everywhere needs.

Comparisons through a whole network (logits, per-sample gradients) have no such closed bound in
float32; tests that make them run the network in float64 (``u = 2⁻⁵³``), where summation order
moves a result by ~``n·u`` per layer, and allow ``FLOAT64_NETWORK_RTOL``: six orders of magnitude
above that, seven below the smallest real error (a wrong mask, a wrong position) they exist to catch.
"""

from __future__ import annotations

import numpy as np
import torch

UNIT_ROUNDOFF = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8, torch.float32: 2.0**-24, torch.float64: 2.0**-53}

FLOAT64_NETWORK_RTOL = 1e-9
"""Relative tolerance for one float64 network computed two ways (see the module docstring):
a sum of n ≤ 10⁴ terms moves by γ_n ≈ 1.1e-12 relative to its terms; a few layers with modest
conditioning keep that under 1e-10."""


def float64_answer_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The mean answer-token cross-entropy of a float64 model, kept in float64 (HF's own ``loss``
    upcasts the logits to float32, which would bring float32 rounding back into a float64 check)."""
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    assert logits.dtype == torch.float64
    return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(),
                                             ignore_index=-100)


def gamma(n: int, dtype: torch.dtype = torch.float32) -> float:
    """Higham's γ_n = n·u / (1 − n·u): the relative error bound of a sum of n terms in any order."""
    nu = n * UNIT_ROUNDOFF[dtype]
    assert nu < 1, f"γ_n undefined for n={n} in {dtype}"
    return nu / (1 - nu)


def unit_norm_atol(d: int, dtype: torch.dtype = torch.float32) -> float:
    """How far from 1 the norm of a row normalised in ``dtype`` can be: the norm's sum of d squares
    (γ_d, halved by the square root, plus u), the division (u), the check's own norm again: ≤ γ_{d+3}."""
    return gamma(d + 3, dtype)


def assert_sums_close(actual, expected, abs_terms, n_terms: int, dtype: torch.dtype = torch.float32) -> None:
    """``|actual − expected| ≤ 2·γ_n·Σ|terms|`` elementwise: two orders of the same ``n_terms``-term
    sums (``abs_terms`` is Σ|terms| for each element, e.g. ``|x| @ |W|`` for ``x @ W``)."""
    a, e, s = (np.asarray(torch.as_tensor(v).double()) for v in (actual, expected, abs_terms))
    bound = 2 * gamma(n_terms, dtype) * np.broadcast_to(s, a.shape)
    worst = np.abs(a - e) - bound
    i = np.unravel_index(np.argmax(worst), worst.shape) if worst.size else ()
    assert worst.size == 0 or worst[i] <= 0, (
        f"at {tuple(int(j) for j in i)}: |{a[i]} − {e[i]}| = {abs(a[i] - e[i]):.3g} exceeds "
        f"2·γ_{n_terms}·Σ|terms| = {bound[i]:.3g}")


def assert_within_one_ulp(actual, expected, dtype) -> None:
    """Two float64 computations of the same values, each stored in ``dtype``: they differ by ~1e-15
    relative, far below ``dtype``'s spacing, and rounding is monotone, so the stored values are equal
    or neighbours (at most one ulp apart)."""
    np.testing.assert_array_max_ulp(np.asarray(actual, dtype=dtype), np.asarray(expected, dtype=dtype),
                                    maxulp=1, dtype=dtype)
