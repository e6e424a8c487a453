"""A prompt's forward pass in bfloat16 on a CPU with bfloat16 matrix units (issue 38): the
precision is chosen as documented, the prefill's matrix products really run in bfloat16 but for
the prompt's last position, the cache the decode steps read is float32 again, and the logits that
choose the first token are close to a float32 prefill's."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from adapters import prompts
from adapters.base_model import load_model, load_tokenizer
from assistant.serving.decoding import PartialPrefill, fast_prefill_dtype

EVIDENCE = prompts.number_evidence(
    ["Warfarin interacts with aspirin", "Metformin treats type 2 diabetes"],
    [("Anticoagulants", "Warfarin is an anticoagulant. Taken with aspirin it raises the risk of bleeding, "
                        "so patients on both are monitored closely and the dose is adjusted."),
     ("Diabetes", "Metformin lowers blood glucose by reducing the liver's glucose production. It is the "
                  "usual first treatment for type 2 diabetes.")])
QUESTIONS = ["Which drug raises the risk of bleeding when taken with aspirin?",
             "Is metformin the usual first treatment for type 2 diabetes?",
             "What does metformin reduce?"]


def _model(dtype=torch.float32, device="cpu", quantizer=None):
    return SimpleNamespace(dtype=dtype, device=torch.device(device), hf_quantizer=quantizer)


@pytest.mark.parametrize("amx, avx512_bf16, expected", [(True, False, torch.bfloat16), (False, True, torch.bfloat16),
                                                        (False, False, None)])
def test_auto_takes_bfloat16_only_where_the_cpu_multiplies_in_it_natively(monkeypatch, amx, avx512_bf16, expected):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    assert fast_prefill_dtype("auto", _model()) == expected
    assert fast_prefill_dtype("float32", _model()) is None
    assert fast_prefill_dtype("bfloat16", _model()) == torch.bfloat16


def test_a_base_that_is_not_float32_keeps_its_own_precision(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert fast_prefill_dtype("auto", _model(torch.bfloat16)) is None
    assert fast_prefill_dtype("bfloat16", _model(torch.float16)) is None
    assert fast_prefill_dtype("auto", _model(device="cuda")) is None  # not measured on a GPU: float32 there
    assert fast_prefill_dtype("bfloat16", _model(quantizer=object())) is None  # serve_quantization nf4


@pytest.fixture(scope="module")
def served(base_model):
    model = load_model(base_model, "none", "cpu").eval()
    return model, load_tokenizer(base_model)


def _prefill(model, ids: list[int], fast_dtype, parts: int = 1):
    """The prefilled prompt, its last logits, and each forward pass's (dtype, tokens) in a projection."""
    seen: list[tuple[torch.dtype, int]] = []
    hook = model.model.layers[0].self_attn.q_proj.register_forward_hook(
        lambda m, i, out: seen.append((out.dtype, out.shape[1])))
    try:
        with torch.inference_mode():
            part = PartialPrefill(model, ids, None, fast_dtype)
            while part.remaining:
                part.advance(model, -(-len(ids) // parts))
            result = part.result(model.config.vocab_size)
            logits = part._logits
    finally:
        hook.remove()
    return result, logits, seen


@pytest.mark.parametrize("parts", [1, 3])
def test_a_bfloat16_prefill_computes_in_bfloat16_but_the_last_position_and_leaves_a_float32_cache(served, parts):
    model, tokenizer = served
    messages = prompts.chat_messages("medicine", QUESTIONS[0], EVIDENCE)
    ids = tokenizer(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
                    add_special_tokens=False)["input_ids"]
    fast, _, fast_seen = _prefill(model, ids, torch.bfloat16, parts)
    exact, _, exact_seen = _prefill(model, ids, None, parts)
    assert {dtype for dtype, _ in fast_seen[:-1]} == {torch.bfloat16} and fast_seen[-1] == (torch.float32, 1)
    assert len(fast_seen) == parts + 1 and sum(tokens for _, tokens in fast_seen) == len(ids)
    assert {dtype for dtype, _ in exact_seen} == {torch.float32} and len(exact_seen) == parts
    for layer in fast.cache.layers:
        assert layer.keys.dtype == layer.values.dtype == torch.float32
        assert layer.get_seq_length() == len(ids)
    assert fast.length == exact.length == len(ids) and torch.equal(fast.seen, exact.seen)


def test_a_bfloat16_prefill_gives_float32_logits_close_to_a_float32_prefill(served):
    """The first token's logits come from a float32 pass, not bfloat16's grid (0.125 apart near
    30, which turned close choices into ties), with the same likeliest token and logits within a
    small share of their spread. (Which token wins after the repetition penalty may still differ
    where two tokens are that close.)"""
    model, tokenizer = served
    for question in QUESTIONS:
        messages = prompts.chat_messages("medicine", question, EVIDENCE)
        ids = tokenizer(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
                        add_special_tokens=False)["input_ids"]
        _, fast_logits, _ = _prefill(model, ids, torch.bfloat16)
        _, exact_logits, _ = _prefill(model, ids, None)
        assert not torch.equal(fast_logits, fast_logits.to(torch.bfloat16).float()), question
        assert int(fast_logits.argmax()) == int(exact_logits.argmax()), question
        spread = float(exact_logits.max() - exact_logits.min())
        assert float((fast_logits - exact_logits).abs().max()) < 0.05 * spread, question
