import os

os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):  # `pytest -n N` (pyproject's addopts): N workers share the cores,
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread each, or their threads fight over them
    os.environ.setdefault("MKL_NUM_THREADS", "1")
import tempfile  # noqa: E402

# built-in models are cached here, not in the user's ~/.cache/adapt
os.environ["ADAPT_CACHE"] = tempfile.mkdtemp(prefix="adapt-test-cache-")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from adapt.data.sample import Sample  # noqa: E402


def noise_pngs(folder: Path, n: int, size: int = 32, seed: int = 0) -> list[str]:
    """``n`` PNGs of random pixels in ``folder`` (0.png, 1.png, ...), their paths."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """The three tiny built-in checkpoints, built once per test session."""
    from adapt.builtin import build_builtin

    root = tmp_path_factory.mktemp("models")
    return {name: build_builtin(name, root / name) for name in ("tiny-llava", "tiny-qwen2-vl", "tiny-causal-lm")}


@pytest.fixture(scope="session")
def toy_samples(tmp_path_factory):
    """A handful of samples: one image, two images and several turns, text only."""
    paths = noise_pngs(tmp_path_factory.mktemp("toy"), 3)
    h, g = "human", "gpt"
    return [
        Sample("toy/1", "toy", "1", ({"from": h, "value": "<image>\nWhat color is the shape?"}, {"from": g, "value": "red"}),
               images=(paths[0],), task="toy"),
        Sample("toy/2", "toy", "2", ({"from": h, "value": "<image>\n<image>\nSame colour?"}, {"from": g, "value": "yes"},
                                     {"from": h, "value": "Sure?"}, {"from": g, "value": "oui, sûr"}),
               images=(paths[1], paths[2]), task="toy"),
        Sample("toy/3", "toy", "3", ({"from": h, "value": "What color is grass?"}, {"from": g, "value": "green"}),
               task="toy"),
    ]
