"""Projectors: every registered one keeps pairwise cosines within JL error at d=8192, is the same
whatever the batch split, chunking or process, and the hash is splitmix64 bit for bit."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from adapt.features.projectors import PROJECTORS, hashed_ints

from tolerances import assert_sums_close

REPRODUCIBLE = [n for n in PROJECTORS.names() if n != "trak"]

pytestmark = pytest.mark.numeric  # every test here compares floats computed two ways


def _splitmix64_finaliser(z: int) -> int:
    m = (1 << 64) - 1
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return (z ^ (z >> 31)) & m


def test_hash_is_splitmix64():
    seed_mix = _splitmix64_finaliser(5) & ((1 << 63) - 1)
    ours = hashed_ints(5, 10, 4).tolist()
    ref = [_splitmix64_finaliser((10 + i + seed_mix) & ((1 << 64) - 1)) & ((1 << 63) - 1) for i in range(4)]
    assert ours == ref


def _gradients(n: int = 48, P: int = 12000, seed: int = 0) -> dict[str, torch.Tensor]:
    """Gradient-like blocks: a few shared directions plus noise, so cosines spread over [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(6, P, generator=g)
    coef = torch.randn(n, 6, generator=g) * torch.linspace(0.2, 3, n)[:, None]
    flat = coef @ basis + 0.5 * torch.randn(n, P, generator=g)
    return {"layer.0.lora_A": flat[:, : P // 3], "layer.0.lora_B": flat[:, P // 3 :]}


def _cos(x: torch.Tensor) -> torch.Tensor:
    x = torch.nn.functional.normalize(x, dim=1)
    return x @ x.T


@pytest.mark.parametrize("name", REPRODUCIBLE)
def test_pairwise_cosines_within_jl_error(name):
    blocks = _gradients()
    exact = _cos(torch.cat(list(blocks.values()), dim=1))
    feats = PROJECTORS.get(name)(8192, seed=0).project(blocks)
    iu = torch.triu_indices(len(exact), len(exact), 1)
    cos_mae = (exact - _cos(feats))[iu[0], iu[1]].abs().mean().item()
    assert cos_mae <= 0.02, cos_mae
    # and the norms are kept in expectation (within 5% on average)
    ratio = feats.norm(dim=1) / torch.cat(list(blocks.values()), dim=1).norm(dim=1)
    assert abs(ratio.mean().item() - 1) < 0.05


def _abs_terms(proj, blocks: dict[str, torch.Tensor]) -> torch.Tensor:
    """Σ|terms| of every output entry: ``|x| @ |R|``, the scale of its float32 rounding error."""
    if proj.name == "rademacher":  # |R| = 1/√d everywhere
        l1 = sum(g.abs().sum(1, dtype=torch.float64) for g in blocks.values())
        return (l1 / proj.dim ** 0.5)[:, None].expand(-1, proj.dim)
    out = torch.zeros(next(iter(blocks.values())).shape[0], proj.dim, dtype=torch.float64)
    for name, g in blocks.items():  # sjlt: |R| is the bucket's indicator
        out.index_add_(1, proj.buckets(name, g.shape[1], g.device)[0], g.abs().double())
    return out


@pytest.mark.parametrize("name", REPRODUCIBLE)
def test_rows_do_not_depend_on_the_batch(name):
    blocks = _gradients(n=10, P=3000)
    proj = PROJECTORS.get(name)(512, seed=7)
    whole = proj.project(blocks)
    parts = torch.cat([proj.project({k: v[i : i + 3] for k, v in blocks.items()}) for i in range(0, 10, 3)])
    assert_sums_close(parts, whole, _abs_terms(proj, blocks), n_terms=3000)  # float32 sums in another order
    other_seed = PROJECTORS.get(name)(512, seed=8).project(blocks)
    assert not torch.allclose(other_seed, whole)


def test_rademacher_chunking_does_not_change_the_matrix():
    blocks = _gradients(n=4, P=2000)
    proj = PROJECTORS.get("rademacher")(256, seed=1, chunk_elements=256 * 7)
    a = proj.project(blocks)
    b = PROJECTORS.get("rademacher")(256, seed=1, chunk_elements=1 << 22).project(blocks)
    assert_sums_close(a, b, _abs_terms(proj, blocks), n_terms=2000)  # chunks of 7 rows vs one: another order
    wrong = PROJECTORS.get("rademacher")(256, seed=2).project(blocks)  # the bound is far below a real error
    with pytest.raises(AssertionError, match="exceeds"):
        assert_sums_close(wrong, b, _abs_terms(proj, blocks), n_terms=2000)


@pytest.mark.parametrize("name", REPRODUCIBLE)
def test_same_seed_same_features_in_another_process(name, tmp_path):
    blocks = _gradients(n=5, P=2000)
    torch.save(blocks, tmp_path / "g.pt")
    code = (f"import torch; from adapt.features.projectors import PROJECTORS; "
            f"b = torch.load({str(tmp_path / 'g.pt')!r}); "
            f"torch.save(PROJECTORS.get({name!r})(1024, seed=3).project(b), {str(tmp_path / 'f.pt')!r})")
    subprocess.run([sys.executable, "-c", code], check=True)
    theirs = torch.load(tmp_path / "f.pt")
    ours = PROJECTORS.get(name)(1024, seed=3).project(blocks)
    assert torch.equal(theirs, ours)


def test_trak_projector_when_traker_is_installed():
    pytest.importorskip("trak")
    blocks = _gradients(n=24, P=6000)
    exact = _cos(torch.cat(list(blocks.values()), dim=1))
    feats = PROJECTORS.get("trak")(2048, seed=0).project(blocks)
    iu = torch.triu_indices(24, 24, 1)
    assert (exact - _cos(feats))[iu[0], iu[1]].abs().mean().item() <= 0.04  # JL error at d=2048
