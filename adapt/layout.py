"""``RunLayout``: the one owner of every run-directory path (DESIGN.md, "Run directory").

Every module asks a layout for a path; none spells a file name of the run directory. The layout
only names paths: it creates nothing and reads nothing.

::

    RUN_DIR/
      config.yaml  state.json  stream.json  metrics.json  metrics.jsonl  report.md
      run.lock  stream.lock  plots/  wandb/  data/ (the built-in stream, by default)
      pool/        manifest.json, samples.parquet, rejected.jsonl, images/ (embedded images)
      rounds/<t>/  features/ hidden/ selection.parquet scores.parquet experts.json selector.json
                   adapter/ model/ train.json eval.json predictions*.jsonl pool.json <method>/
      rounds/base/ eval.json, predictions.jsonl: the evaluation before any training (R0)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BEFORE_TRAINING = -1
"""The round index of the model before any training (R0 of the accuracy matrix; its folder is
``rounds/base`` and its state key ``base:<phase>``)."""

_BASE_NAME = "base"


def round_name(t: int) -> str:
    """A round's name in folder names and state keys: ``"0"``, ``"1"``, … or ``"base"``."""
    return _BASE_NAME if t == BEFORE_TRAINING else str(int(t))


def round_label(t: int) -> int | str:
    """A round as state.json and eval.json record it: its number, or ``"base"``."""
    return _BASE_NAME if t == BEFORE_TRAINING else int(t)


def parse_round(name: str) -> int:
    """The inverse of :func:`round_name`."""
    return BEFORE_TRAINING if name == _BASE_NAME else int(name)


RUN_MODEL_PREFIX = "adapt-run:"
"""How a file of the run directory names a model of this run that no folder holds."""


def run_model_ref(t: int) -> str:
    """The name a file of the run directory gives the model after round ``t`` (``BEFORE_TRAINING``:
    the base) where no folder holds it: ``adapt-run:after-round-<t>`` (``adapt-run:base``). Under
    ``lora.between_rounds: merge`` round t's adapter applies to the model after round t-1, rounds
    ..t-1 merged into the weights; its adapter_config.json names that model so
    (``base_model_name_or_path``), which no loader resolves: loaded alone, the adapter is an error,
    not a wrong model. ``adapt export RUN_DIR --round t-1`` writes that model."""
    return RUN_MODEL_PREFIX + (_BASE_NAME if t == BEFORE_TRAINING else f"after-round-{int(t)}")


@dataclass(frozen=True)
class PoolLayout:
    """``RUN_DIR/pool``: the DataPool's files."""

    dir: Path

    @property
    def samples(self) -> Path:
        return self.dir / "samples.parquet"

    @property
    def manifest(self) -> Path:
        return self.dir / "manifest.json"

    @property
    def rejected(self) -> Path:
        """The samples ``stream.skip_invalid`` quarantined, with their reasons."""
        return self.dir / "rejected.jsonl"

    @property
    def images(self) -> Path:
        """Images that came embedded in the records (bytes, data URLs), one file each, content-addressed."""
        return self.dir / "images"


@dataclass(frozen=True)
class RoundLayout:
    """``RUN_DIR/rounds/<t>``: what round t wrote."""

    dir: Path

    @property
    def features(self) -> Path:
        """Round t's projected gradient features (a FeatureStore): on round t-1's trained adapter, or on
        the adapter round t trains (``features.adapter``)."""
        return self.dir / "features"

    @property
    def hidden(self) -> Path:
        """Hidden-state embeddings for pruning (``pool.prune_embedding: hidden``), from the gradient pass."""
        return self.dir / "hidden"

    @property
    def selection(self) -> Path:
        return self.dir / "selection.parquet"

    @property
    def scores(self) -> Path:
        """The experts' scores, apart from the decisions."""
        return self.dir / "scores.parquet"

    @property
    def experts(self) -> Path:
        return self.dir / "experts.json"

    @property
    def selector(self) -> Path:
        """What a selector decided beyond the table (its summary)."""
        return self.dir / "selector.json"

    @property
    def adapter(self) -> Path:
        return self.dir / "adapter"

    @property
    def model(self) -> Path:
        """Every weight, after a round that trains them all (``lora.first_round: full``)."""
        return self.dir / "model"

    @property
    def train(self) -> Path:
        return self.dir / "train.json"

    @property
    def eval(self) -> Path:
        return self.dir / "eval.json"

    @property
    def predictions(self) -> Path:
        return self.dir / "predictions.jsonl"

    @property
    def predictions_backfill(self) -> Path:
        """Answers on datasets added to the stream after this round."""
        return self.dir / "predictions_backfill.jsonl"

    @property
    def pool(self) -> Path:
        """The active pool's size after the round."""
        return self.dir / "pool.json"

    def method(self, name: str) -> "ReferenceLayout":
        """A method's own folder (a reference model and its features)."""
        return ReferenceLayout(self.dir / name)


@dataclass(frozen=True)
class ReferenceLayout:
    """``rounds/<t>/<method>``: a method's own files of the round (TIVE's warm-up, MLLM-Selector's
    seed model, hindsight's per-sample record)."""

    dir: Path

    @property
    def samples(self) -> Path:
        """One row per pool sample: what the method measured and decided (hindsight)."""
        return self.dir / "samples.parquet"

    @property
    def adapter(self) -> Path:
        return self.dir / "warmup"

    @property
    def features(self) -> Path:
        return self.dir / "features"

    def probe(self, k: int) -> Path:
        """The adapter of hindsight's learning-rate probe of the round's k-th task (``split: gain``)."""
        return self.dir / f"probe-{k}"


@dataclass(frozen=True)
class RunLayout:
    """Every path of one run directory."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def stream(self) -> Path:
        return self.root / "stream.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def base(self) -> Path:
        """The pre-trained base the run started from (a built-in one with its weights' sha256)."""
        return self.root / "base.json"

    @property
    def events(self) -> Path:
        """``metrics.jsonl``: one line per logged event, append-only."""
        return self.root / "metrics.jsonl"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    def selection_plot(self, t: int) -> Path:
        return self.plots / f"selection_round_{t}.png"

    @property
    def accuracy_plot(self) -> Path:
        return self.plots / "accuracy_matrix.png"

    def accuracy_plot_round(self, t: int) -> Path:
        """The accuracy matrix as it stood after round ``t`` (drawn for wandb's per-round heatmap)."""
        return self.plots / f"accuracy_matrix_round_{t}.png"

    @property
    def wandb(self) -> Path:
        return self.root / "wandb"

    @property
    def data(self) -> Path:
        """Where the built-in stream is written unless ``stream.data_dir`` says otherwise."""
        return self.root / "data"

    @property
    def lock(self) -> Path:
        return self.root / "run.lock"

    @property
    def stream_lock(self) -> Path:
        """Held while stream.json is read, changed and written back."""
        return self.root / "stream.lock"

    @property
    def pool(self) -> PoolLayout:
        return PoolLayout(self.root / "pool")

    @property
    def rounds(self) -> Path:
        return self.root / "rounds"

    def round(self, t: int) -> RoundLayout:
        """Round ``t``'s folder; ``BEFORE_TRAINING`` is ``rounds/base``."""
        return RoundLayout(self.rounds / round_name(t))

    def trained_rounds(self) -> list[int]:
        """The numbered round folders present, in order."""
        return sorted(int(d.name) for d in self.rounds.glob("*") if d.name.isdigit())


@dataclass(frozen=True)
class ExportLayout:
    """``adapt export``'s folder OUT: the merged model's files in it, or (``--adapter``) ``base/`` and
    ``adapter/``; ``adapt_export.json`` says which."""

    dir: Path

    @property
    def base(self) -> Path:
        """The model the exported adapter applies to (every weight, tokenizer, image processor)."""
        return self.dir / "base"

    @property
    def adapter(self) -> Path:
        return self.dir / "adapter"

    @property
    def info(self) -> Path:
        return self.dir / "adapt_export.json"


def stream_manifest(data_dir: Path) -> Path:
    """The built-in stream's own listing in its data folder."""
    return Path(data_dir) / "stream.json"
