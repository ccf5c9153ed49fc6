"""Evaluate a model on every task's eval split by greedy generation and the task's answer scorer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from adapt.config import EvaluationConfig
from adapt.data.sample import Sample
from adapt.evaluation.answer_scorers import ANSWER_SCORERS
from adapt.models.collate import Collator
from adapt.models.families import ModelFamily


@dataclass
class EvalTask:
    name: str
    metric: str
    samples: list[Sample]


@dataclass
class TaskResult:
    score: float
    n: int
    predictions: list[dict[str, Any]] = field(default_factory=list)


@torch.no_grad()
def generate_answers(
    model: Any, family: ModelFamily, samples: list[Sample], cfg: EvaluationConfig, max_length: int,
    desc: str = "eval", progress: bool = True,
) -> list[str]:
    """Greedy answers to the last question of each sample, batched with left padding."""
    collate = Collator(family, max_length, for_generation=True)
    tok = family.tokenizer
    device = next(model.parameters()).device
    answers: list[str] = []
    model.eval()
    bs = cfg.batch_size
    for i in tqdm(range(0, len(samples), bs), desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
        batch = {k: v.to(device) for k, v in collate(samples[i : i + bs]).items()}
        out = model.generate(
            **batch, max_new_tokens=cfg.max_new_tokens, do_sample=False, num_beams=1,
            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        )
        new = out[:, batch["input_ids"].shape[1] :]
        for row in tok.batch_decode(new, skip_special_tokens=True):
            answers.append(family.strip_answer(row))
    return answers


def evaluate_tasks(
    model: Any, family: ModelFamily, tasks: list[EvalTask], cfg: EvaluationConfig, max_length: int,
    progress: bool = True, accelerator: Any = None,
) -> dict[str, TaskResult]:
    """Score on each task (mean of the task's answer scorer over its eval samples).

    With an ``accelerator`` of several processes, each rank answers a contiguous share of every
    task's samples (accelerate ``split_between_processes``) and the answers are gathered in order, so
    every rank returns the same results.
    """
    results: dict[str, TaskResult] = {}
    for task in tasks:
        samples = task.samples[: cfg.max_samples] if cfg.max_samples else task.samples
        desc = f"eval {task.name}"
        if accelerator is not None and accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            with accelerator.split_between_processes(samples) as share:
                mine = generate_answers(model, family, share, cfg, max_length, desc=desc, progress=progress)
            preds = gather_object(mine)
        else:
            preds = generate_answers(model, family, samples, cfg, max_length, desc=desc, progress=progress)
        scorer = ANSWER_SCORERS.get(task.metric)
        rows = []
        for s, p in zip(samples, preds):
            ref = s.last_answer
            rows.append({"uid": s.uid, "prediction": p, "reference": ref, "score": float(scorer(p, ref))})
        score = sum(r["score"] for r in rows) / len(rows) if rows else float("nan")
        results[task.name] = TaskResult(score=score, n=len(rows), predictions=rows)
    return results
