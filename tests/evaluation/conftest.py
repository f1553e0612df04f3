"""Fixtures for evaluation tests: a tiny Llama saved as safetensors with a real (trained) tokenizer.

``tiny_llama_dir`` (session-scoped) is a folder transformers loads like any Hub model: ``config.json``,
``model.safetensors`` (fp32) and a byte-level BPE tokenizer (``tokenizer.json``, 512 tokens) trained here
with the ``tokenizers`` library on one Shakespeare work from the offline corpus, so it works offline and
encodes any text. The model: hidden 64, FFN 128, 2 layers, 4 heads, 2 KV heads (k/v rows 32), untied
lm_head, weights drawn N(0, 0.1) from a fixed seed so its logits are far from uniform.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

TINY_VOCAB = 512
TINY_HIDDEN, TINY_FFN, TINY_LAYERS = 64, 128, 2


def build_tokenizer(text: str, vocab_size: int = TINY_VOCAB):
    """A byte-level BPE (GPT-2 style pre-tokenizer) trained on ``text``, as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([text], trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )


def make_tiny_llama(path: Path, *, tie_word_embeddings: bool = False, seed: int = 0) -> Path:
    """Build, seed and save the tiny Llama + tokenizer into ``path``; returns ``path``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from evaluation.corpus import shakespeare_split

    evaluation_works, _ = shakespeare_split()
    tokenizer = build_tokenizer(evaluation_works[0].read_text(encoding="utf-8"))
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=TINY_HIDDEN, intermediate_size=TINY_FFN,
        num_hidden_layers=TINY_LAYERS, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=1024, tie_word_embeddings=tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.1)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A saved tiny Llama (safetensors, untied lm_head) with its tokenizer; see the module docstring."""
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_tied_llama_dir(tmp_path_factory) -> Path:
    """The same tiny Llama with the lm_head tied to the token embedding (as SmolLM2)."""
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama-tied"), tie_word_embeddings=True)


def pytest_collection_modifyitems(config, items):
    """Skip ``slow`` tests here unless ``-m`` names slow; those also marked ``ci`` always run (CI's
    real-model check)."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason="slow real-model test: run with -m slow")
    for item in items:
        if item.path.is_relative_to(here) and "slow" in item.keywords and "ci" not in item.keywords:
            item.add_marker(skip)
