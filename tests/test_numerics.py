"""The CPU arithmetic pin (adapt.numerics): which variables are set, when, and that torch obeys them."""

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapt.cli import app
from adapt.errors import InputError
from adapt.numerics import ISA_ENV, PINS, pin_cpu_numerics, requested_isa

PINNED = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")


def test_the_default_pins_all_three_libraries_to_avx2():
    env: dict[str, str] = {}
    assert pin_cpu_numerics(env, machine="x86_64", torch_loaded=False) == PINS["avx2"]
    assert env == {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def test_a_variable_the_user_set_is_kept():
    env = {"MKL_CBWR": "COMPATIBLE", ISA_ENV: "AVX2"}
    assert pin_cpu_numerics(env, machine="AMD64", torch_loaded=False) == {
        "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert env["MKL_CBWR"] == "COMPATIBLE"


@pytest.mark.parametrize("env,machine,loaded", [({ISA_ENV: "native"}, "x86_64", False), ({}, "aarch64", False),
                                                ({}, "x86_64", True)])
def test_nothing_is_pinned_when_native_off_x86_or_after_torch_loaded(env, machine, loaded):
    before = dict(env)
    assert pin_cpu_numerics(env, machine=machine, torch_loaded=loaded) == {}
    assert env == before


def test_an_unknown_isa_is_one_error_naming_the_variable():
    with pytest.raises(InputError, match=f"{ISA_ENV}='sse9'.*avx2, native"):
        requested_isa({ISA_ENV: "sse9"})


def test_the_command_refuses_an_unknown_isa_with_exit_2_before_a_run_starts(tmp_path):
    config = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    res = CliRunner().invoke(app, ["run", str(config), "--run-dir", str(tmp_path / "run")], env={ISA_ENV: "sse9"})
    assert res.exit_code == 2, res.output
    assert ISA_ENV in res.output and "sse9" in res.output
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="the pin is for x86-64")
def test_torch_computes_with_avx2_kernels_once_pinned():
    """A fresh process that pins before importing torch gets torch's AVX2 kernels (DEFAULT on a
    processor without AVX2, where nothing faster exists to avoid)."""
    env = {k: v for k, v in os.environ.items() if k not in (*PINNED, ISA_ENV)}
    code = ("from adapt.numerics import pin_cpu_numerics; pin_cpu_numerics(); import torch; "
            "print(torch.backends.cpu.get_cpu_capability())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() in ("AVX2", "DEFAULT")


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="the pin is for x86-64")
def test_the_command_pins_before_its_config_check_loads_torch(tmp_path):
    """`adapt run` checks its config (which imports torch) before a run starts: the pin must come
    first. A fresh process runs the command on a config whose checkpoint does not exist (the check
    refuses it after torch is loaded), then reports the kernels torch chose."""
    config = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    env = {k: v for k, v in os.environ.items() if k not in (*PINNED, ISA_ENV)}
    code = ("import sys; from adapt.cli import app\n"
            f"try: app(['run', {str(config)!r}, '--run-dir', {str(tmp_path / 'run')!r}, "
            "'model.name_or_path=/no/such/checkpoint'])\n"
            "except SystemExit as e: print('exit', e.code)\n"
            "import torch; print(torch.backends.cpu.get_cpu_capability())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    lines = out.stdout.split()
    assert lines[:2] == ["exit", "2"], out.stdout + out.stderr
    assert lines[-1] in ("AVX2", "DEFAULT")
