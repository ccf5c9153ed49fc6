"""Random projections of per-sample gradients to d dimensions, behind one interface.

A projector maps the gradient blocks of a batch (one ``[n, P_m]`` block per LoRA linear ``m``) to
``[n, d]``: ``Σ_m R_mᵀ g_m`` with ``R_m`` a random ``P_m × d`` matrix that depends only on
``(seed, m's name)``, so features are the same whatever the batch size, the rank that computed
them or the machine (Johnson–Lindenstrauss: inner products are preserved in expectation).

- ``rademacher``: dense ±1/√d entries, as TRAK/LESS/Adapt-∞ use, generated block by block from a
  counter-based integer hash (identical on CPU and any GPU; the P × d matrix is never held whole).
  Cost O(P·d) per batch.
- ``sjlt``: sparse JL transform with one ±1 per input coordinate (Kane & Nelson 2014, s = 1):
  coordinate i of block m goes to bucket h_m(i) with sign σ_m(i). Cost O(P) per sample.
- ``trak``: delegates to the ``traker`` package's projectors (``pip install traker``; its CUDA
  projector where ``fast_jl`` is installed) for features comparable with LESS/TIVE; its matrices
  depend on the GPU model (METHODS.md), so these features are not reproducible across machines.

Adding a projector: one class registered with ``@PROJECTORS.register("name")``.
"""

from __future__ import annotations

import zlib
from typing import Any

import torch

from adapt.features.per_sample import at_least_float32
from adapt.registry import Registry

PROJECTORS: Registry[type["Projector"]] = Registry("projector")

_MASK63 = (1 << 63) - 1


def block_seed(seed: int, name: str) -> int:
    """A 31-bit seed for one gradient block: the run's seed and the block's module name."""
    return (zlib.crc32(name.encode()) ^ (seed * 0x9E3779B1)) & 0x7FFFFFFF


def _signed(c: int) -> int:
    """A 64-bit constant as the int64 torch multiplies by (two's complement)."""
    return c - (1 << 64) if c >= (1 << 63) else c


_M1, _M2 = _signed(0xBF58476D1CE4E5B9), _signed(0x94D049BB133111EB)


def _mix(x: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser in int64 arithmetic (multiplication wraps; ``>>`` is arithmetic, so the
    high bits are masked after each shift), masked to 63 non-negative bits. Integer multiply, xor and
    shift only: the same bits on every device."""
    x = x ^ ((x >> 30) & ((1 << 34) - 1))
    x = x * _M1
    x = x ^ ((x >> 27) & ((1 << 37) - 1))
    x = x * _M2
    x = x ^ ((x >> 31) & ((1 << 33) - 1))
    return x & _MASK63


def hashed_ints(seed: int, start: int, count: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``count`` pseudo-random non-negative int64 values for counters ``start .. start+count-1``."""
    idx = torch.arange(start, start + count, dtype=torch.int64, device=device)
    return _mix(idx + _mix(torch.tensor(seed, dtype=torch.int64)).to(device))


class Projector:
    """Base class: ``dim`` output dimensions, ``seed`` for every random matrix."""

    name = ""

    def __init__(self, dim: int, seed: int = 0) -> None:
        if dim <= 0:
            raise ValueError(f"projection dim must be positive, got {dim}")
        self.dim = dim
        self.seed = seed

    def project_block(self, name: str, grads: torch.Tensor) -> torch.Tensor:
        """``[n, P_m]`` → ``[n, dim]`` for the block of module ``name``."""
        raise NotImplementedError

    def project(self, blocks: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sum of every block's projection: the projection of the concatenated gradient."""
        out = None
        for name, g in blocks.items():
            p = self.project_block(name, at_least_float32(g.flatten(1)))
            out = p if out is None else out + p
        assert out is not None, "no gradient blocks to project"
        return out


@PROJECTORS.register("rademacher")
class RademacherProjector(Projector):
    """Dense ±1/√d, generated in chunks of rows from a counter-based hash (never P × d at once)."""

    name = "rademacher"

    def __init__(self, dim: int, seed: int = 0, chunk_elements: int = 1 << 22) -> None:
        super().__init__(dim, seed)
        self.chunk_rows = max(1, chunk_elements // dim)

    def matrix_rows(self, name: str, start: int, stop: int, device: Any, dtype: torch.dtype) -> torch.Tensor:
        """Rows ``start..stop`` of block ``name``'s matrix, ``[stop-start, dim]`` of ±1/√d."""
        bits = hashed_ints(block_seed(self.seed, name), start * self.dim, (stop - start) * self.dim, device)
        signs = (bits & 1).to(dtype) * 2 - 1
        return signs.view(stop - start, self.dim) / self.dim ** 0.5

    def project_block(self, name: str, grads: torch.Tensor) -> torch.Tensor:
        out = grads.new_zeros((grads.shape[0], self.dim))
        P = grads.shape[1]
        for s in range(0, P, self.chunk_rows):
            e = min(P, s + self.chunk_rows)
            out += grads[:, s:e] @ self.matrix_rows(name, s, e, grads.device, grads.dtype)
        return out


@PROJECTORS.register("sjlt")
class SJLTProjector(Projector):
    """Sparse JL (one ±1 per coordinate): O(P) per sample; buckets and signs cached per block."""

    name = "sjlt"

    def __init__(self, dim: int, seed: int = 0) -> None:
        super().__init__(dim, seed)
        self._cache: dict[tuple[str, int, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def buckets(self, name: str, size: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
        key = (name, size, str(device))
        if key not in self._cache:
            bits = hashed_ints(block_seed(self.seed, name), 0, size, device)
            self._cache[key] = ((bits >> 1) % self.dim, ((bits & 1) * 2 - 1).to(torch.float32))
        return self._cache[key]

    def project_block(self, name: str, grads: torch.Tensor) -> torch.Tensor:
        idx, sign = self.buckets(name, grads.shape[1], grads.device)
        out = grads.new_zeros((grads.shape[0], self.dim))
        return out.index_add_(1, idx, grads * sign.to(grads.dtype))


@PROJECTORS.register("trak")
class TrakProjector(Projector):
    """TRAK's projectors (``traker``): CudaProjector with fast_jl on CUDA, else BasicProjector."""

    name = "trak"

    def __init__(self, dim: int, seed: int = 0) -> None:
        super().__init__(dim, seed)
        try:
            import trak.projectors  # noqa: F401
        except ImportError as exc:
            raise ImportError("projector 'trak' needs the traker package: pip install traker") from exc
        self._projs: dict[tuple[str, int], Any] = {}

    def project_block(self, name: str, grads: torch.Tensor) -> torch.Tensor:
        from trak.projectors import BasicProjector, CudaProjector, ProjectionType

        key = (name, grads.shape[1])
        if key not in self._projs:
            kw = dict(grad_dim=grads.shape[1], proj_dim=self.dim, seed=block_seed(self.seed, name),
                      proj_type=ProjectionType.rademacher, device=grads.device)
            try:
                self._projs[key] = CudaProjector(**kw, max_batch_size=16) if grads.is_cuda else BasicProjector(**kw)
            except Exception:  # no fast_jl: TRAK's own fallback
                self._projs[key] = BasicProjector(**kw)
        return self._projs[key].project(grads, model_id=0).float()
