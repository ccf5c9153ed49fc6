"""The experiment config: pydantic models, YAML loading and ``key.sub=value`` overrides.

Every section forbids unknown keys, so a typo is an error that names the key and the file.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, StrictInt, ValidationError, field_validator,
                      model_validator)

from adapt.errors import ConfigError

LEGACY_ADAPT_INF_KEYS = ("k", "experts", "expert_choice", "budget_split", "sampler")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TinyModelConfig(_Section):
    """Sizes of the built-in tiny LLaVA (CLIP vision tower + Llama), built from a transformers config."""

    image_size: int = Field(32, description="image side in pixels")
    patch_size: int = Field(8, description="ViT patch side in pixels")
    vision_hidden_size: int = Field(64, description="CLIP vision tower width")
    vision_layers: int = Field(2, description="CLIP vision tower layers")
    text_hidden_size: int = Field(128, description="Llama width")
    text_layers: int = Field(2, description="Llama decoder layers")
    heads: int = Field(4, description="attention heads (both towers)")
    intermediate_size: int = Field(256, description="Llama MLP width")
    pretrain_steps: int = Field(
        0, ge=0, description="batches of synthetic image captions the built model is pre-trained on "
        "(the analogue of LLaVA's alignment stage; 0: random weights)",
    )


BUILTIN_MODEL_NAMES = ("tiny-llava", "tiny-qwen2-vl", "tiny-causal-lm")  # adapt.builtin.BUILTIN_MODELS builds them
BUILTIN_MODEL_CHOICES = ", ".join(f"builtin:{n}" for n in BUILTIN_MODEL_NAMES)


class ModelConfig(_Section):
    name_or_path: str = Field("builtin:tiny-llava",
                              description=f"a local HF checkpoint dir, or a built-in tiny model: {BUILTIN_MODEL_CHOICES}")
    family: Literal["auto", "llava", "qwen2_vl", "causal_lm"] = Field(
        "auto", description="how inputs are built: auto (from the checkpoint's config), llava, qwen2_vl, "
        "causal_lm (text only)")
    dtype: Literal["auto", "float32", "bfloat16", "float16", "float64"] = Field(
        "auto", description="weights' dtype: auto (bf16 on a GPU that has it, else float32), float32, "
        "bfloat16, float16, float64 (numerical checks)")
    max_length: int = Field(
        512, description="tokens per sample (image tokens included); longer samples are cut at the end (a cut "
        "that would split an image is an error)")
    system_prompt: str = Field("", description="text put before every conversation (Qwen2-VL's system turn; "
                               "empty there: its chat template's default, 'You are a helpful assistant.')")
    attn_implementation: str | None = Field(
        None, description="transformers' attn_implementation (eager, sdpa, flash_attention_2); null: its "
        "default")
    trust_remote_code: bool = Field(False, description="run Python code shipped inside the checkpoint folder "
                                    "(only for checkpoints you trust)")
    cache_dir: str | None = Field(None, description="where built-in models are cached (default ~/.cache/adapt)")
    tiny: TinyModelConfig = TinyModelConfig()


class LoraSettings(_Section):
    r: int = Field(16, description="LoRA rank (peft LoraConfig.r)")
    alpha: int = Field(32, description="LoRA scaling numerator (peft lora_alpha; scale = alpha / r)")
    dropout: float = Field(0.0, description="dropout on the LoRA input (peft lora_dropout)")
    target_modules: Union[str, list[str]] = Field(
        "all-linear", description="peft target_modules: all-linear (every linear layer but the output head) or"
        " module names")
    modules_to_save: list[str] | None = Field(
        None, description="modules trained in full and saved with the adapter (e.g. [lm_head] when answers use new tokens)"
    )
    first_round: Literal["lora", "full"] = Field(
        "lora", description="'full' trains every weight of the base in round 0 (used to pre-train the tiny model)"
    )
    between_rounds: Literal["continue", "merge"] = Field(
        "continue",
        description="'continue': one adapter trained on round after round; 'merge': each round's adapter is "
        "merged into the weights and the next round starts a fresh adapter (rounds/<t>/adapter then applies "
        "on top of rounds 0..t-1 merged)",
    )


class DatasetEntry(_Section):
    name: str
    train: str
    eval: str | None = None
    metric: str = "exact"
    task: str | None = None
    image_root: str | None = None


class StreamConfig(_Section):
    builtin: str | None = Field("default", description="name of a built-in synthetic stream, or null")
    seed: int = Field(0, description="seed of the synthetic data generator")
    scale: float = Field(1.0, gt=0, description="multiplies the built-in train split sizes")
    data_dir: str | None = Field(None, description="where the built-in stream is written (default RUN_DIR/data)")
    datasets: list[DatasetEntry] = Field(default_factory=list, description="datasets of the stream, in order")
    check_images: bool = Field(
        True, description="open every image at ingest (a missing or unreadable image is an error naming the "
        "file and sample)")
    skip_invalid: bool = Field(False, description="quarantine invalid samples into RUN_DIR/pool/rejected.jsonl "
                               "(with their reasons) and go on, instead of stopping at the first")
    max_sample_mb: float = Field(8.0, gt=0, description="a JSON/JSONL record larger than this (MiB) is refused: "
                                 "no real sample is, and reading one must not fill the memory")
    all_at_once: bool = Field(False, description="every dataset arrives in round 0: one selection from the union "
                              "and one training (the one-shot setting of TIVE, MLLM-Selector, DataTailor, GDO)")


class AdaptInfSettings(_Section):
    """Adapt-∞ (Maharana et al. 2024; METHODS.md, Adapt-∞)."""

    k: Union[StrictInt, Literal["auto"]] = Field(10, description="pseudo-skill clusters (or auto: silhouette)")
    experts: list[str] = Field(default_factory=lambda: ["ppl", "el2n", "entropy", "grand", "image_grounding"],
                               description="the selector experts competing in each cluster")
    expert_choice: str = Field("entropy", description="entropy (bins over ±4 of the standardised scores), "
                               "entropy_released (the released code's bins over ±4 raw standard deviations, "
                               "which depend on each score's scale), or fixed:<expert>")
    budget_split: str = Field("uniform", description="uniform | proportional | score_std")
    sampler: str = Field("ccs", description="ccs | top | bottom | random")
    entropy_over: Literal["all", "answer"] = Field(
        "all", description="positions the `entropy` expert averages the predictive entropy over: all (every "
        "position of the sequence, prompt and image included: the reference code) or answer (the answer tokens)")


class TiveSettings(_Section):
    """TIVE (Liu et al. 2024; METHODS.md, TIVE)."""

    warmup_fraction: float = Field(
        0.08, ge=0, le=1, description="share of the pool the warm-up reference model is fine-tuned on, the same "
        "number of samples from every task (the authors' 8%); 0: the round's model and features stand in")
    q: float = Field(0.001, ge=0, description="temperature of the softmax over instance values inside a task "
                     "(the released 0.001 makes the draw almost uniform)")
    layers: Union[Literal["all", "last", "attention"], list[str]] = Field(
        "attention", description="LoRA layers TIVE's gradients are taken on: attention (every self-attention "
        "LoRA layer of the language model, as the reference compute_gradient_features.py), all, last, or "
        "regular expressions on module names")


class MllmSelectorSettings(_Section):
    """MLLM-Selector (Ma et al. 2025; METHODS.md, our reading of the paper)."""

    seed_fraction: float = Field(
        0.1, ge=0, le=1, description="random share of the round's active pool (the new dataset included) a seed "
        "model is fine-tuned on each round, as the paper fine-tunes one before scoring; 0: the round's own "
        "model and features stand in")
    alpha: float = Field(0.5, ge=0, le=1, description="share of the budget that goes to the highest necessity overall")
    groups: int = Field(10, ge=1, description="k-means groups of the gradient features for grouped sampling")


class DataTailorSettings(_Section):
    """DataTailor (Yu et al. 2024; METHODS.md, DataTailor)."""

    cut: float = Field(0.1, gt=0, le=1, description="the Ward tree is cut at this fraction of its last merge's height")
    ward_max: int = Field(2000, ge=2, description="a task with more samples is first reduced to this many k-means "
                          "centroids and Ward runs on them (exact Ward is quadratic)")
    hidden: Literal["pre_norm", "post_norm"] = Field(
        "pre_norm", description="the last decoder layer's output before the final norm (the reference code), "
        "or after it (transformers' last hidden_states)")


class GdoSettings(_Section):
    """GDO (Wu et al. 2026; METHODS.md, GDO), the image descriptors."""

    preset: Literal["minloss", "diverse"] = Field(
        "minloss", description="minloss: stratum quotas proportional to the pool, filled by quality; diverse: "
        "quotas ∝ √stratum size, filled round-robin over coverage clusters")
    coverage_k: int = Field(10, ge=1, description="k-means clusters of the gradient features for coverage")
    length_bins: int = Field(3, ge=1, description="question- and answer-length bins (quantiles) of the strata")
    ranking: Literal["reference", "quality"] = Field(
        "reference", description="how a stratum is filled: reference (build_pair.py's image-QA rank, "
        "0.9·tanh(base/3) + 0.15·clip(z(q), ±4)/4 with base the text heuristics) or quality (q alone)")
    z_scope: Literal["source", "pool"] = Field(
        "source", description="every z-score GDO takes (the descriptors' robust z, the rank's z(q)) within "
        "each source dataset, or over the whole pool (the reference's, over its whole metric table)")


class HindsightNoise(_Section):
    """Wrong labels from the loop's own loss history (training dynamics: AUM, Pleiss et al. 2020,
    arXiv 2001.10528; forgetting events, Toneva et al. 2019, arXiv 1812.05159)."""

    enabled: bool = Field(True, description="flag the samples trained last round whose loss is still far above "
                          "their task's (robust z of log-loss among them); flagged samples are never selected "
                          "again and are pruned first")
    threshold: float = Field(2.5, gt=0, description="robust z (median, 1.4826·MAD) of log(loss) above which a "
                             "sample trained last round is flagged")
    min_trained: int = Field(20, ge=3, description="a task needs this many samples trained last round to flag any")


class HindsightBudget(_Section):
    """The budget split over tasks by need, with a replay floor."""

    enabled: bool = Field(True, description="split the budget over tasks by need: b_t = B(ρ·p_t + (1−ρ)·p_t·L_t / "
                          "Σ_s p_s·L_s), p_t the task's weight (see weight), L_t how far it is from learned now (see "
                          "need); off: b_t = B·n_t / Σ n (what random draws on average)")
    floor: float = Field(0.5, ge=0, le=1, description="ρ, the share of the budget split by the weights p_t alone "
                         "(the replay floor every task keeps)")
    need: Literal["loss", "error", "answer_error"] = Field(
        "answer_error", description="L_t, how far the task is from learned: loss, its samples' mean loss (nats, unbounded: "
        "a new task's 5–15 takes almost all of the need share); error, their mean 1 − exp(−loss) (the answer's "
        "per-token error rate, bounded by 1: a new task counts at most 1, a half-learned old one about ½); "
        "answer_error, their mean 1 − exp(−loss · answer tokens) (1 − the probability of the whole answer: a "
        "box of 24 tokens at 0.02 nats each fails 38% of the time)")
    new_tasks: Literal["need", "share"] = Field(
        "need", description="a task none of whose samples has been trained yet: need, by the formula like the "
        "others; share, its share of the pool (B·p_t, what random gives it: before any training its loss says how "
        "new its answers look, not how hard they are to learn), the formula splitting the rest over the tasks "
        "trained before")
    weight: Literal["pool", "task"] = Field(
        "task", description="p_t, a task's weight in both the floor and the need: pool, its share of the pool (the "
        "floor then replays what random would); task, 1/T over the T tasks (every task counts once, as in the "
        "average accuracy, whatever its dataset's size)")
    floor_weight: Literal["pool", "task"] | None = Field(
        "pool", description="p_t in the floor alone (the need keeps weight): pool, the floor replays what random "
        "would (a large dataset still gaining keeps its replay, a small one trained through gets less) while the "
        "need part weights every task once; task, 1/T (the defaults frozen for issue 19's first checks); null: as "
        "weight")
    split: Literal["need", "gain"] = Field(
        "need", description="how the need's part of the budget is split: need, in proportion to p_t·L_t; gain, "
        "so as to maximise the expected gain in A, Σ p_t·L_t·(1 − exp(−r_t·x_t)), each task's need falling at its "
        "own learning rate r_t per sample trained, measured by a probe at the task's first round (see probe): a "
        "fast learner gets what it takes to learn and no more, a task training barely moves gets its floor")
    forgetting_guard: bool = Field(
        False, description="a task trained before whose need now lies above the lowest it has had since it was "
        "first trained by guard_z standard errors or more (it is being forgotten) gets at least its pool share of "
        "the budget (what random replays), the formula splitting the rest over the others")
    guard_z: float = Field(2.0, gt=0, description="forgetting_guard: the rise of the need, in standard errors of a "
                           "difference of two means (√2·s/√n over the task's samples), that counts as forgetting")
    probe: int = Field(160, ge=1, description="split: gain: a copy of the round's model, with a fresh adapter, is "
                       "trained (training.epochs, as the round trains) on this many of a new task's samples, and "
                       "r_t = ln(L before / L after) / samples, L the need of as many of its other samples")


class HindsightCoverage(_Section):
    """Coverage inside a task."""

    enabled: bool = Field(True, description="draw each task's share stratified over fine k-means clusters of the "
                          "hidden-state embedding (proportional allocation, random inside a cluster); off: at random")
    per_cluster: int = Field(1, ge=1, description="the task's quota over this many is its number of fine clusters")


class HindsightUnseen(_Section):
    """Coverage over the rounds."""

    enabled: bool = Field(True, description="inside each draw (a fine cluster, or the task), the samples trained "
                          "fewest times in earlier rounds first (never trained first), ties at random: the rounds "
                          "together cover the pool as one training on all of it does; off: at random")


class HindsightPrune(_Section):
    """Pruning when ``pool.max_size`` is exceeded."""

    enabled: bool = Field(True, description="the flagged samples first, then each task keeps its share of the "
                          "pool, split uniformly over fine clusters of the hidden states and the near-duplicates "
                          "dropped inside each (SemDeDup), so no fine cluster loses its last sample; off: random")
    per_cluster: int = Field(2, ge=1, description="samples a task keeps over this many is its number of fine clusters")


class HindsightSettings(_Section):
    """``hindsight``, our continual selector (not from a paper): each part switchable for ablation."""

    noise: HindsightNoise = HindsightNoise()
    budget: HindsightBudget = HindsightBudget()
    coverage: HindsightCoverage = HindsightCoverage()
    unseen: HindsightUnseen = HindsightUnseen()
    prune: HindsightPrune = HindsightPrune()


class SelectionConfig(_Section):
    """The method and the budget; each method's own settings nested under its name."""

    method: str = Field(
        "random", description="the selector: full, random, multitask, adapt_inf, tive, mllm_selector, "
        "datatailor, gdo, hindsight (adapt/methods)")
    budget: Union[StrictInt, float] = Field(
        0.25, description="a fraction (float) of the round's pool, or a count (int)")
    budget_of: Literal["pool", "seen"] = Field(
        "pool", description="what a fraction budget is a fraction of: pool (the round's active pool) or seen "
        "(every sample ingested so far, pruned ones too, at most the active pool): with pool.max_size, the "
        "samples trained stay those of the same run without a cap")
    adapt_inf: AdaptInfSettings = AdaptInfSettings()
    tive: TiveSettings = TiveSettings()
    mllm_selector: MllmSelectorSettings = MllmSelectorSettings()
    datatailor: DataTailorSettings = DataTailorSettings()
    gdo: GdoSettings = GdoSettings()
    hindsight: HindsightSettings = HindsightSettings()

    @model_validator(mode="before")
    @classmethod
    def _nest_legacy_adapt_inf_keys(cls, data: Any) -> Any:
        """Configs written before the settings were nested (``selection.k``, ``selection.experts``, ...)
        still load: those keys move under ``selection.adapt_inf``, with a warning."""
        if isinstance(data, dict) and (flat := [k for k in LEGACY_ADAPT_INF_KEYS if k in data]):
            warnings.warn(f"selection.{', selection.'.join(flat)}: now under selection.adapt_inf "
                          f"(e.g. selection.adapt_inf.{flat[0]})", DeprecationWarning, stacklevel=2)
            data = dict(data)
            nested = dict(data.get("adapt_inf") or {})
            for k in flat:
                nested.setdefault(k, data.pop(k))
            data["adapt_inf"] = nested
        return data

    @field_validator("budget")
    @classmethod
    def _check_budget(cls, v: Union[int, float]) -> Union[int, float]:
        if isinstance(v, int):
            if v < 1:
                raise ValueError("a count budget must be >= 1")
        elif not 0.0 < v <= 1.0:
            raise ValueError("a fraction budget must be in (0, 1]")
        return v


class TrainingConfig(_Section):
    epochs: float = Field(1.0, description="passes over the round's selected samples")
    batch_size: int = Field(16, description="samples per optimiser step (per process)")
    grad_accum: int = Field(1, description="batches accumulated per optimiser step")
    lr: float = Field(1e-3, description="AdamW learning rate (cosine decay after a linear warm-up)")
    first_round_lr: float | None = Field(None, description="round 0's learning rate (null: lr)")
    first_round_epochs: float | None = Field(None, description="round 0's epochs (null: epochs)")
    weight_decay: float = Field(0.0, description="AdamW weight decay")
    warmup_ratio: float = Field(0.03, description="share of the round's steps with a linear warm-up")
    max_grad_norm: float = Field(1.0, description="gradient clipping norm")
    num_workers: int = Field(0, description="DataLoader workers")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="accelerate mixed precision: auto (bf16 on a GPU that has it, else no), no, bf16, "
        "fp16")
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass "
                                         "(transformers' gradient checkpointing, training only): far less "
                                         "memory for long sequences and large models, about a third more time")


class EvaluationConfig(_Section):
    batch_size: int = Field(64, description="samples per generation batch")
    max_new_tokens: int = Field(32, description="greedy decoding length of an answer")
    max_samples: int | None = Field(None, description="cap on eval samples per task (None: the whole split)")
    before_training: bool = Field(True, description="evaluate the base model first (R0, needed for FWT)")


class FeaturesConfig(_Section):
    """Per-sample projected LoRA gradients of the whole active pool, every round (adapt/features)."""

    enabled: bool = Field(False, description="compute the features (and the loss-based scores) in the rounds "
                          "whose selector or pruning reads them")
    every_round: bool = Field(False, description="compute them every round even when nothing reads them "
                              "(for analysis; needs enabled)")
    dim: int = Field(8192, gt=0, description="projection dimension d")
    projector: str = Field("sjlt", description="rademacher | sjlt | trak")
    layers: Union[Literal["all", "last", "attention"], list[str]] = Field(
        "all", description="LoRA layers whose gradients count: all, last (the last decoder layer, as Adapt-∞), "
        "attention (the language model's self-attention layers, as TIVE), or regular expressions on module names")
    batch_size: int = Field(16, gt=0, description="samples per forward/backward of the gradient pass")
    adapter: Literal["previous", "fresh"] = Field(
        "previous", description="under lora.between_rounds: merge, the adapter the gradients are taken on: "
        "previous (round t-1's trained adapter, before it is merged: the reference code) or fresh (round t's new "
        "adapter, B = 0, so only the B-gradients are non-zero); the same adapter under continue")
    store_dtype: Literal["float16", "float32"] = Field(
        "float16", description="how the unit-length feature rows are stored (their norm is a score column)")


class PoolConfig(_Section):
    max_size: Union[StrictInt, float, None] = Field(None, description="cap on the active pool: a count or a fraction")
    prune_embedding: Literal["gradient", "hidden"] = Field(
        "gradient", description="what SemDeDup prunes on: the round's gradient features, or the last hidden "
                                "states (mean over tokens), computed in the same pass as the gradients")
    prune_order: Literal["arrival", "centroid"] = Field(
        "arrival", description="the order SemDeDup judges a cluster's samples in (each against those before "
        "it): arrival (pool order, as the reference runs) or centroid (farthest from the cluster's centroid "
        "first, the reference's commented-out alternative)")
    prune_split: Literal["uniform", "proportional"] = Field(
        "uniform", description="how the kept samples are split over clusters: uniform (⌈keep/k⌉ each, small "
        "clusters kept whole: the reference's assign_budget_to_cluster) or proportional to cluster size")
    prune_index: Literal["auto", "exact", "ivf", "hnsw"] = Field(
        "auto", description="how SemDeDup finds each sample's nearest earlier one in its cluster: exact "
        "(faiss flat index, what the reference computes; time quadratic in the cluster's size), ivf (inverted "
        "file, ⌊√n_c⌋ lists, 8 probed; ours, for pools of millions), hnsw (faiss HNSW graph), or auto: exact "
        "for clusters of up to 20,000 samples, ivf above")


class TrackingConfig(_Section):
    wandb: bool = Field(True, description="log to Weights & Biases")
    wandb_mode: Literal["offline", "online", "disabled"] = Field(
        "offline", description="wandb mode (offline writes RUN_DIR/wandb, to sync later)")
    project: str = Field("adapt", description="wandb project")
    run_name: str | None = Field(None, description="wandb run name (null: the run directory's name)")
    group: str | None = Field(None, description="wandb group")
    tags: list[str] = Field(default_factory=list, description="wandb tags")


class ExperimentConfig(_Section):
    seed: int = Field(
        0, description="seed of every random choice of the run (selection, training, projection); each phase "
        "derives its own")
    model: ModelConfig = ModelConfig()
    lora: LoraSettings = LoraSettings()
    stream: StreamConfig = StreamConfig()
    selection: SelectionConfig = SelectionConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    features: FeaturesConfig = FeaturesConfig()
    pool: PoolConfig = PoolConfig()
    tracking: TrackingConfig = TrackingConfig()
    _source: str = PrivateAttr("defaults")  # the file (and overrides) it was read from, for error messages

    @property
    def source(self) -> str:
        """Where this config was read from: ``"configs/demo.yaml"``, ``"... (with overrides)"``, ``"defaults"``."""
        return self._source

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(root)"
        if e["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key '{key}'")
        else:
            lines.append(f"{source}: key '{key}': {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'training.lr=3e-4'`` -> (['training', 'lr'], 0.0003); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key.sub=value")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from None
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str], source: str = "overrides") -> dict[str, Any]:
    """Set each ``key.sub=value`` in a nested dict (creating sections as needed)."""
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for p in parts[:-1]:
            child = node.get(p)
            if child is None:
                child = node[p] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{source}: override {text!r}: '{p}' is not a section")
            node = child
        node[parts[-1]] = value
    return data


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML config (or the defaults if ``path`` is None) and apply overrides."""
    source = str(path) if path is not None else "defaults"
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{source}: config file not found")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source}: the top level must be a mapping")
        data = loaded
    if overrides:
        apply_overrides(data, overrides, source=f"{source} (command-line override)")
    try:
        config = ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None
    config._source = source + (" (with overrides)" if overrides else "")
    return config
