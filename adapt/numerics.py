"""The CPU arithmetic a run computes with: pinned to one instruction set, so that the same run gives
the same numbers on x86-64 machines with AVX2 (seen on an AVX2-only and an AVX-512 AMD EPYC).

PyTorch, MKL and oneDNN pick their float32 kernels by what the processor has (AVX2, AVX-512, ...),
and the kernels sum in different orders. Training amplifies the last-bit differences: the built-in
base pre-trained on an AVX-512 machine had other weights (sha256 12536878…) than on an AVX2-only one
(bfd0b3fe…), and the demo printed A 74.7 on an AVX-512 Xeon (8d9cdab), 70.3 on an AVX2-only EPYC. With the
three variables below set to AVX2 before torch loads, an AVX-512 machine builds the AVX2 machine's base
bit for bit and its demo prints 70.3 too.

``ADAPT_CPU_ISA``: ``avx2`` (the default) pins them; ``native`` leaves torch, MKL and oneDNN to pick
the fastest kernels of the machine (runs then compare only with runs of the same processor). A
variable already set by the user is kept. GPU kernels are not affected.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import MutableMapping

from adapt.errors import InputError

ISA_ENV = "ADAPT_CPU_ISA"
# per ISA, the variables that pin each library's kernel choice: PyTorch's own vectorised kernels
# (ATEN_CPU_CAPABILITY), MKL's BLAS in its conditional-numerical-reproducibility mode (MKL_CBWR) and
# oneDNN's primitives (ONEDNN_MAX_CPU_ISA)
PINS: dict[str, dict[str, str]] = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "native": {},
}
DEFAULT_ISA = "avx2"


def requested_isa(environ: MutableMapping[str, str] | None = None) -> str:
    """``$ADAPT_CPU_ISA`` (lower case), or the default; an unknown value is an :class:`InputError`."""
    env = os.environ if environ is None else environ
    isa = env.get(ISA_ENV, DEFAULT_ISA).strip().lower()
    if isa not in PINS:
        raise InputError(f"{ISA_ENV}={env[ISA_ENV]!r}: unknown instruction set; use one of {', '.join(PINS)}")
    return isa


def pin_cpu_numerics(environ: MutableMapping[str, str] | None = None, machine: str | None = None,
                     torch_loaded: bool | None = None) -> dict[str, str]:
    """Set the variables of :data:`PINS` for ``$ADAPT_CPU_ISA`` (those not already set) and return
    what was set. Nothing is set on a processor that is not x86-64, or once torch is imported (its
    kernels are chosen by then: the ``adapt`` command calls this before it loads torch)."""
    env = os.environ if environ is None else environ
    isa = requested_isa(env)
    machine = (machine or platform.machine()).lower()
    loaded = "torch" in sys.modules if torch_loaded is None else torch_loaded
    if loaded or machine not in ("x86_64", "amd64"):
        return {}
    set_now = {k: v for k, v in PINS[isa].items() if k not in env}
    env.update(set_now)
    return set_now


def cpu_numerics() -> dict[str, str | None]:
    """What the process computes with, for a run's record: the ISA asked for, torch's kernel
    capability in effect, and the MKL and oneDNN pins (None where unset)."""
    import torch

    return {"isa": requested_isa(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkl_cbwr": os.environ.get("MKL_CBWR"), "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA")}
