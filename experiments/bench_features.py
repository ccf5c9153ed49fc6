"""Per-sample gradient features vs a LoRA training step vs the LESS/TIVE/Adapt-∞ reference.

In one process, on the same model and data:
  train      LoRA training steps (forward, backward, AdamW) at the preset's batch size;
  features   ours: one batched forward/backward per batch, exact per-sample LoRA gradients from the
             captured activations (adapt.features.per_sample), projected to d (--projector);
  reference  batch-1 backward per sample, LoRA gradients concatenated, projected in blocks of 16
             with a dense Rademacher matrix (TRAK's BasicProjector/CudaProjector when ``traker`` is
             installed, else ours), as LESS/TIVE/Adapt-∞ do.
Accuracy: ``cos_mae`` = mean absolute error of the pairwise cosines of our features against the
cosines of the exact (unprojected) gradients of the reference, over the benchmark samples.

    python experiments/bench_features.py --preset tiny          # CPU, the demo's tiny LLaVA
    python experiments/bench_features.py --preset 1b            # CUDA: 0.94B Llama, LoRA r=128 q,k,v,o

The last line printed is JSON: train_samples_per_s, features_samples_per_s,
reference_samples_per_s, ratio_to_train, speedup_vs_reference, peak_mem_gib, cos_mae (and more).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapt.config import LoraSettings  # noqa: E402
from adapt.features.per_sample import lora_linears, per_sample_gradients  # noqa: E402
from adapt.features.projectors import PROJECTORS  # noqa: E402
from adapt.models.collate import Collator  # noqa: E402
from adapt.models.lora import add_new_adapter  # noqa: E402

PRESETS = {
    "tiny": dict(batch=16, dim=8192, lora=dict(r=16, alpha=32, target_modules="all-linear"), n=96, device="cpu"),
    "1b": dict(batch=16, dim=8192, lora=dict(r=128, alpha=256, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
               n=160, device="cuda", seq=512),
}


def build_tiny(tmp: Path, n: int):
    from adapt.data.demo_stream import write_demo_stream
    from adapt.data.readers import read_dataset
    from adapt.models.loading import load_model
    from adapt.builtin import build_builtin

    model_dir = build_builtin("tiny-llava", tmp / "model")
    write_demo_stream(tmp / "data", seed=0, scale=0.05, progress=False)
    samples = []
    for name in ("vqa_general", "grounding", "multi_image"):
        samples += read_dataset(tmp / "data" / name / "train.json", name=name)
    b = load_model(model_dir, dtype="float32")
    return b.model, b.family, samples[:n]


def build_1b(n: int, seq: int, device: str = "cuda", hidden: int = 2048, layers: int = 16, mlp: int = 5504):
    """Random-init Llama-architecture, 0.94B parameters (hidden 2048, 16 layers, MLP 5504, vocab
    32000), bf16 on CUDA; text samples of ``seq`` byte tokens, the second half the answer.
    (``--smoke`` runs the same code with a small width and depth on the CPU.)"""
    from transformers import LlamaConfig, LlamaForCausalLM

    from adapt.data.sample import Sample
    from adapt.models.families import FAMILIES
    from adapt.models.tiny import byte_level_tokenizer

    tok = byte_level_tokenizer(["<pad>", "<s>", "</s>"], pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    cfg = LlamaConfig(vocab_size=32000, hidden_size=hidden, intermediate_size=mlp, num_hidden_layers=layers,
                      num_attention_heads=16, num_key_value_heads=16, max_position_embeddings=2048,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(device=device, dtype=torch.bfloat16 if device == "cuda" else torch.float32)
    family = FAMILIES.get("causal_lm")(cfg, tok, None)
    g = torch.Generator().manual_seed(0)
    letters = "abcdefghijklmnopqrstuvwxyz "
    samples = []
    for i in range(n):
        text = "".join(letters[j] for j in torch.randint(0, len(letters), (seq,), generator=g).tolist())
        half = seq // 2 - 8
        samples.append(Sample(f"s/{i}", "s", str(i), ({"from": "human", "value": text[:half]},
                                                      {"from": "gpt", "value": text[half : 2 * half]})))
    return model, family, samples


def peak_mem_gib(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB (process peak RSS)


def reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=list(PRESETS), default="tiny")
    ap.add_argument("--projector", default="sjlt", choices=PROJECTORS.names())
    ap.add_argument("--n", type=int, default=None, help="samples per measurement")
    ap.add_argument("--smoke", action="store_true",
                    help="with --preset 1b: the same code on the CPU with a 2-layer, 256-wide model, seq 128")
    ap.add_argument("--layers", default="all", help="all | last | a regular expression on LoRA module names")
    args = ap.parse_args()
    p = PRESETS[args.preset]
    device, bs, dim, n = p["device"], p["batch"], p["dim"], args.n or p["n"]
    if args.smoke:
        device, n = "cpu", args.n or 32
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("preset 1b needs a CUDA GPU (or --smoke)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-features-"))
    if args.preset == "tiny":
        model, family, samples = build_tiny(tmp, n)
    elif args.smoke:
        model, family, samples = build_1b(n, 128, "cpu", hidden=256, layers=2, mlp=688)
    else:
        model, family, samples = build_1b(n, p["seq"])
    torch.manual_seed(0)
    model = add_new_adapter(model, LoraSettings(**p["lora"]))
    for name, prm in model.named_parameters():  # a trained-looking adapter: B != 0
        if "lora_B" in name:
            torch.nn.init.normal_(prm, std=0.02)
    model.to(device)
    linears = lora_linears(model, args.layers if args.layers in ("all", "last") else [args.layers])
    lora_params = [lin.module.weight for lin in linears]
    P = sum(w.numel() for w in lora_params)
    collate = Collator(family, 1024)
    batches = [collate(samples[i : i + bs]) for i in range(0, n, bs)]
    batches = [{k: v.to(device) for k, v in b.items()} for b in batches]
    images = [[len(s.images) if family.uses_images else 0 for s in samples[i : i + bs]] for i in range(0, n, bs)]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)

    # --- train step
    opt = torch.optim.AdamW([w for w in model.parameters() if w.requires_grad], lr=1e-4)
    model.train()

    def train_step(batch):
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    train_step(batches[0])  # warm-up
    reset_peak(device)
    sync(device)
    t0 = time.perf_counter()
    for b in batches:
        train_step(b)
    sync(device)
    train_s = time.perf_counter() - t0
    train_peak = peak_mem_gib(device)
    del opt
    model.eval()

    # --- ours
    proj = PROJECTORS.get(args.projector)(dim, seed=0)
    feats = []

    def features(batch, imgs):
        with autocast:
            res = per_sample_gradients(model, batch, linears, images_per_sample=imgs)
        return proj.project(res.grads)

    features(batches[0], images[0])  # warm-up
    reset_peak(device)
    sync(device)
    t0 = time.perf_counter()
    for b, im in zip(batches, images):
        feats.append(features(b, im))
    sync(device)
    feat_s = time.perf_counter() - t0
    feat_peak = peak_mem_gib(device)
    ours = torch.cat(feats).float()

    # --- reference: batch 1, LoRA grads concatenated, dense projection in blocks of 16
    try:
        from trak.projectors import BasicProjector, CudaProjector, ProjectionType

        kw = dict(grad_dim=P, proj_dim=dim, seed=0, proj_type=ProjectionType.rademacher, device=device)
        try:
            ref_proj = CudaProjector(**kw, max_batch_size=16) if device == "cuda" else BasicProjector(**kw)
        except Exception:
            ref_proj = BasicProjector(**kw)
        ref_name = type(ref_proj).__name__

        def ref_project(g):
            return ref_proj.project(g.to(torch.float16 if device == "cuda" else torch.float32), model_id=0)
    except ImportError:
        dense = PROJECTORS.get("rademacher")(dim, seed=0)
        ref_name = "adapt rademacher (traker not installed)"

        def ref_project(g):
            return dense.project_block("all", g)

    one_collate = [[collate([s]) for s in samples[i : i + bs]] for i in range(0, n, bs)]
    exact_rows = []
    reset_peak(device)
    sync(device)
    t0 = time.perf_counter()
    for group in one_collate:
        grads = []
        for one in group:
            one = {k: v.to(device) for k, v in one.items()}
            with autocast:
                loss = model(**one).loss
            gs = torch.autograd.grad(loss, lora_params, allow_unused=True)
            grads.append(torch.cat([(torch.zeros_like(w) if g is None else g).flatten().float()
                                    for w, g in zip(lora_params, gs)]))
        block = torch.stack(grads)
        ref_project(block)
        if len(exact_rows) < 64:
            exact_rows.append(block[: 64 - len(exact_rows)].cpu())
    sync(device)
    ref_s = time.perf_counter() - t0
    ref_peak = peak_mem_gib(device)

    exact = torch.cat(exact_rows)[:64]
    m = len(exact)

    def cos(x):
        x = torch.nn.functional.normalize(x.float(), dim=1)
        return x @ x.T

    iu = torch.triu_indices(m, m, 1)
    cos_mae = (cos(exact) - cos(ours[:m].cpu()))[iu[0], iu[1]].abs().mean().item()

    out = {
        "preset": args.preset + (" (smoke)" if args.smoke else ""), "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "projector": args.projector, "layers": args.layers, "dim": dim, "lora_params": P, "samples": n, "batch": bs,
        "train_samples_per_s": round(n / train_s, 2), "features_samples_per_s": round(n / feat_s, 2),
        "reference_samples_per_s": round(n / ref_s, 2), "ratio_to_train": round(train_s / feat_s, 3),
        "speedup_vs_reference": round(ref_s / feat_s, 2),
        "peak_mem_gib": round(feat_peak, 3), "train_peak_mem_gib": round(train_peak, 3),
        "reference_peak_mem_gib": round(ref_peak, 3), "reference_projector": ref_name,
        "cos_mae": round(cos_mae, 4), "cos_pairs": int(iu.shape[1]),
    }
    print(f"train {out['train_samples_per_s']} samples/s | ours ({args.projector}) "
          f"{out['features_samples_per_s']} samples/s = {out['ratio_to_train']}x training | reference "
          f"{out['reference_samples_per_s']} samples/s | ours/reference {out['speedup_vs_reference']}x | "
          f"cos MAE {out['cos_mae']}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
