"""One round of fine-tuning on the selected samples through accelerate.

The same loop runs in one process (CPU or one GPU) and under ``accelerate launch`` (DDP, FSDP or
DeepSpeed from the user's accelerate config). Loss on answer tokens only (labels -100 elsewhere),
gradient accumulation, bf16 autocast on GPU, deterministic on CPU for a given seed.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from adapt.errors import AdaptError
from adapt.config import TrainingConfig
from adapt.data.sample import Sample
from adapt.models.collate import Collator
from adapt.models.families import ModelFamily


# Encoded samples (token ids, labels, image tensors) kept across the epochs of a round, at most this
# many bytes per process: from the second epoch on, those samples skip image decoding and tokenising.
ENCODING_CACHE_BYTES = 1 << 30


@dataclass
class TrainStats:
    samples: int
    steps: int
    epochs: float
    lr: float
    first_loss: float
    last_loss: float
    mean_loss: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cpu_only() -> bool:
    """True on a machine without an accelerator: then several processes are CPU ranks (gloo)."""
    mps = getattr(torch.backends, "mps", None)
    xpu = getattr(torch, "xpu", None)
    return not (torch.cuda.is_available() or (mps is not None and mps.is_available())
                or (xpu is not None and xpu.is_available()))


def process_state():
    """accelerate's ``PartialState`` of this process (rank, world size, barriers), CPU ranks where no GPU."""
    from accelerate import PartialState

    return PartialState(cpu=_cpu_only())


def get_accelerator(cfg: TrainingConfig):
    """The process's ``Accelerator`` (one per process; accelerate keeps its state global)."""
    from accelerate import Accelerator

    mp = cfg.mixed_precision
    if mp == "auto":
        mp = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    from accelerate.utils import DistributedDataParallelKwargs

    # as HF Trainer without gradient checkpointing: some weights get no gradient (e.g. the vision
    # tower's last layer when LLaVA reads the features of the layer before it)
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(cpu=_cpu_only(), mixed_precision=mp, gradient_accumulation_steps=cfg.grad_accum,
                       kwargs_handlers=[ddp])


def train_round(
    model: Any,
    family: ModelFamily,
    samples: list[Sample],
    cfg: TrainingConfig,
    accelerator: Any | None,
    seed: int,
    max_length: int,
    lr: float | None = None,
    epochs: float | None = None,
    desc: str = "train",
    progress: bool = True,
) -> TrainStats:
    """Fine-tune the trainable parameters of ``model`` on ``samples``; returns loss statistics.

    ``accelerator=None`` trains in this process alone, outside any distributed group (used to
    pre-train the built-in model while the other ranks wait).
    """
    from accelerate.utils import set_seed
    from transformers import get_scheduler

    lr = cfg.lr if lr is None else lr
    epochs = cfg.epochs if epochs is None else epochs
    start = time.perf_counter()
    if not samples:
        return TrainStats(0, 0, epochs, lr, float("nan"), float("nan"), float("nan"), 0.0)
    set_seed(seed)
    if accelerator is not None:
        accelerator.gradient_accumulation_steps = cfg.grad_accum
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        samples, batch_size=cfg.batch_size, shuffle=True, generator=gen,
        collate_fn=Collator(family, max_length, cache_bytes=ENCODING_CACHE_BYTES if epochs > 1 else 0),
        num_workers=cfg.num_workers,
    )
    batches_per_epoch = len(loader)
    total_batches = max(1, math.ceil(batches_per_epoch * epochs))
    opt_steps = max(1, math.ceil(total_batches / cfg.grad_accum))
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.gradient_checkpointing:
        _gradient_checkpointing(model, True)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    scheduler = get_scheduler(
        "cosine", optimizer, num_warmup_steps=int(cfg.warmup_ratio * opt_steps), num_training_steps=opt_steps
    )
    if accelerator is not None:
        model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    # under N processes each rank sees 1/N of the batches; the prepared scheduler steps N times per step
    total_batches = max(1, math.ceil(len(loader) * epochs))
    opt_steps = max(1, math.ceil(total_batches / cfg.grad_accum))
    model.train()
    losses: list[float] = []
    main = accelerator is None or accelerator.is_main_process
    bar = tqdm(total=total_batches, desc=desc, disable=not progress or not main, leave=False, dynamic_ncols=True)
    done = 0
    while done < total_batches:
        for batch in loader:
            if accelerator is None:
                loss = _plain_step(model, batch, params, optimizer, scheduler, cfg, done)
            else:
                with accelerator.accumulate(model):
                    out = model(**batch)
                    loss = out.loss
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and cfg.max_grad_norm:
                        accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            done += 1
            bar.update(1)
            if done % 10 == 0:
                bar.set_postfix(loss=f"{sum(losses[-10:]) / len(losses[-10:]):.3f}")
            if done >= total_batches:
                break
    bar.close()
    model.eval()
    if cfg.gradient_checkpointing:
        _gradient_checkpointing(accelerator.unwrap_model(model) if accelerator is not None else model, False)
    if accelerator is not None:
        accelerator.free_memory()
    tail = losses[-max(1, len(losses) // 10):]
    return TrainStats(
        samples=len(samples), steps=opt_steps, epochs=epochs, lr=lr, first_loss=losses[0],
        last_loss=sum(tail) / len(tail), mean_loss=sum(losses) / len(losses),
        seconds=time.perf_counter() - start,
    )


def _gradient_checkpointing(model: Any, on: bool) -> None:
    """transformers' gradient checkpointing on the (peft-wrapped) model, non-reentrant (the LoRA
    weights get their gradients without inputs that require grad); off again after training, so
    the feature and evaluation passes run as usual."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(base, "supports_gradient_checkpointing", False):
        raise AdaptError(f"training.gradient_checkpointing: {type(base).__name__} does not support it")
    new_api = hasattr(base, "activation_checkpointing_enable")  # transformers 5 renamed it
    if on and new_api:
        base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    elif on:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        (base.activation_checkpointing_disable if new_api else base.gradient_checkpointing_disable)()


def _plain_step(model: Any, batch: dict[str, Any], params: list[torch.nn.Parameter], optimizer: Any,
                scheduler: Any, cfg: TrainingConfig, index: int) -> torch.Tensor:
    """One micro-batch without accelerate: backward, and every ``grad_accum`` batches a clipped step."""
    device = next(model.parameters()).device
    loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
    (loss / cfg.grad_accum).backward()
    if (index + 1) % cfg.grad_accum == 0:
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return loss.detach()
