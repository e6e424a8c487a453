"""Training examples as tensors: the chat template rendered and tokenised, labels on the final
answer only, padded batches, and the loss over answer tokens. Training and the adapter's
evaluation both score with these, so a validation loss means the same in both."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from adapters.example import Example

IGNORE = -100  # label of prompt and padding tokens


class TrainingError(RuntimeError):
    """Training cannot start or finish; the message says why."""


@dataclass
class Batch:
    input_ids: object  # LongTensor [batch, length]
    attention_mask: object
    labels: object
    tokens: int  # real (non-padding) tokens


def encode_example(tokenizer, messages: list[dict], max_tokens: int) -> tuple[list[int], list[int]]:
    """Token ids of the whole conversation in the chat template and labels that train only the
    final assistant turn. Too long: the prompt loses tokens from its start (the question and
    evidence are at its end)."""
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise TrainingError("the chat template renders the prompt differently with and without the answer")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"][:max_tokens // 2]
    prompt_ids = prompt_ids[-(max_tokens - len(answer_ids)):]
    return prompt_ids + answer_ids, [IGNORE] * len(prompt_ids) + answer_ids


def make_batches(tokenizer, examples: Sequence[Example], batch_size: int, max_tokens: int) -> list[Batch]:
    encoded = [encode_example(tokenizer, e.messages, max_tokens) for e in examples]
    return [_collate(encoded[i:i + batch_size], tokenizer.pad_token_id) for i in range(0, len(encoded), batch_size)]


def _collate(rows: list[tuple[list[int], list[int]]], pad_id: int) -> Batch:
    import torch

    length = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), length), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for row, (tokens, targets) in enumerate(rows):
        ids[row, :len(tokens)] = torch.tensor(tokens)
        labels[row, :len(targets)] = torch.tensor(targets)
        mask[row, :len(tokens)] = 1
    return Batch(ids, mask, labels, int(mask.sum()))


def completion_loss(model, batch: Batch):
    """Mean cross-entropy over answer tokens and their count. The output layer (vocabulary-sized)
    runs only where there is a label, not over every prompt position."""
    import torch
    import torch.nn.functional as F

    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    device = next(causal.parameters()).device
    hidden = causal.get_decoder()(input_ids=batch.input_ids.to(device),
                                  attention_mask=batch.attention_mask.to(device)).last_hidden_state
    targets = batch.labels.to(device)[:, 1:]
    wanted = targets != IGNORE
    logits = causal.get_output_embeddings()(hidden[:, :-1][wanted]).float()
    count = int(wanted.sum())
    if count == 0:
        return torch.zeros((), device=device, requires_grad=True), 0
    return F.cross_entropy(logits, targets[wanted]), count


def answer_loss(model, batches) -> float:
    """Mean loss per answer token over pre-built batches (from make_batches), in eval mode."""
    import torch

    total, tokens = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for batch in batches:
            loss, count = completion_loss(model, batch)
            total += loss.item() * count
            tokens += count
    model.train(was_training)
    return total / max(tokens, 1)
