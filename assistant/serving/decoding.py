"""Decoding of many requests at once on one model: a batch of rows that share one KV cache.

A newcomer is prefilled alone (its prompt through the model in parts, no padding, so its first
token is what it would be on an idle server; between parts the engine decodes the running rows,
or stops the newcomer) and then merged into the running batch, its cache padded on the left to
the batch's length; each decode step is one forward pass for every row, each row with its own
LoRA adapter (PEFT's mixed-adapter batches: ``adapter_names=[...]``, ``"__base__"``
for a row without one). Finished rows leave at once and the columns no remaining row uses are
cut from the front of the cache, so the cache is as long as the longest row alive, not the
longest the batch ever saw.

Padding is masked out and every row has its own positions, so a row's tokens do not depend on
the other rows (up to floating-point ties; tests/test_engine.py compares with each request alone).

Merging and dropping rows build the new cache first and then swap it in, so a failure there
(out of memory merging a long prompt's cache) leaves the batch as it was.

Nothing here is thread-safe, by design: only the engine's thread (assistant/serving/engine.py) calls it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

BASE_ROW = "__base__"  # PEFT's adapter name for a row of a mixed batch that uses no adapter
# A 135M model loops easily under greedy decoding; a mild penalty (the one transformers'
# RepetitionPenaltyLogitsProcessor applies) keeps answers from repeating.
REPETITION_PENALTY = 1.1


def column_major_weights(model) -> int:
    """Store every full-precision linear weight transposed in memory (same values, same shape,
    other strides): MKL then multiplies a few rows by it without transposing, which made a
    batch-8 decode step on this 2-core CPU ~1.5x faster and batch 16 ~2x (bench/engine_decode.py),
    with prefill and batch 1 unchanged. For the serving copy on CPU only (training never sees it).
    Returns the number of weights changed."""
    changed = 0
    for module in model.modules():
        if type(module) is torch.nn.Linear and module.weight.dtype.is_floating_point \
                and module.weight.is_contiguous():
            module.weight.data = module.weight.data.t().contiguous().t()
            changed += 1
    return changed


@dataclass
class Row:
    """One request's place in the batch."""
    owner: object  # the engine's record of the request
    adapter: str | None  # None: the base model
    length: int  # real (unpadded) tokens in the cache
    next_token: int  # the token fed at the next step
    temperature: float = 0.0  # 0: greedy; above: sampled from the softmax of logits / temperature


def forward(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, cache, adapters: list[str | None],
            position_ids: torch.Tensor | None = None) -> torch.Tensor:
    """The last position's logits, shape [rows, vocabulary], float32."""
    kwargs = {}
    if hasattr(model, "peft_config"):  # a plain base (no adapter loaded yet) takes no adapter_names
        kwargs["adapter_names"] = [name or BASE_ROW for name in adapters]
    elif any(adapters):
        raise RuntimeError(f"no adapter is loaded, but a row asks for {next(a for a in adapters if a)!r}")
    output = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                   cache=cache, use_cache=True, logits_to_keep=1, **kwargs)
    return output.logits[:, -1, :].float()


def next_tokens(logits: torch.Tensor, seen: torch.Tensor, temperatures: list[float]) -> torch.Tensor:
    """Each row's next token after the repetition penalty on tokens it has already seen (in the
    prompt or generated): the argmax for a row at temperature 0, else drawn from the softmax of
    its penalised logits / temperature (torch's global generator: seed it for repeatable draws)."""
    penalised = _penalised(logits, seen, REPETITION_PENALTY)
    chosen = penalised.argmax(dim=-1)
    sampled = [i for i, t in enumerate(temperatures) if t > 0]
    if sampled:
        rows = torch.tensor(sampled, dtype=torch.long, device=logits.device)
        scale = torch.tensor([temperatures[i] for i in sampled], dtype=logits.dtype, device=logits.device)
        probabilities = torch.softmax(penalised.index_select(0, rows) / scale[:, None], dim=-1)
        chosen[rows] = torch.multinomial(probabilities, 1)[:, 0]
    return chosen


def _penalised(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    return torch.where(seen, torch.where(logits < 0, logits * penalty, logits / penalty), logits)


class _GrowingLayer:
    """Mixed into transformers' DynamicLayer: keys and values live in a buffer with spare room,
    and a step writes its token in place. DynamicLayer concatenates instead, copying the whole
    cache at every step: two thirds of a batch-8 decode step on this CPU (torch profiler)."""

    SPARE = 64  # columns reserved beyond what is needed, so most steps allocate nothing

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            self._used, self._buffers = 0, None
        end = self._used + key_states.shape[-2]
        self._reserve(key_states, value_states, end)
        keys, values = self._buffers
        keys[:, :, self._used:end] = key_states
        values[:, :, self._used:end] = value_states
        self._used = end
        self.keys, self.values = keys[:, :, :end], values[:, :, :end]
        return self.keys, self.values

    def _reserve(self, key_states, value_states, end: int) -> None:
        if self._buffers is not None and self._buffers[0].shape[2] >= end \
                and self._buffers[0].shape[0] == key_states.shape[0]:
            return
        fresh = []
        for old, new in zip((self.keys, self.values), (key_states, value_states)):
            shape = list(new.shape)
            shape[2] = end + self.SPARE
            buffer = new.new_zeros(shape)
            if self._used:
                buffer[:, :, :self._used] = old
            fresh.append(buffer)
        self._buffers = tuple(fresh)

    def convert(self, dtype: torch.dtype) -> None:
        """Keys and values in ``dtype`` (one copy of a layer that is not already)."""
        if self.is_initialized and self._buffers is not None and \
                any(buffer.dtype != dtype for buffer in self._buffers):
            self.assign(*(buffer.to(dtype) for buffer in self._buffers), self._used)

    def get_seq_length(self) -> int:
        return self._used if self.is_initialized else 0

    def assign(self, keys: torch.Tensor, values: torch.Tensor, used: int) -> None:
        """Replace the contents (after rows joined or left) with buffers the caller no longer
        uses, whose first ``used`` columns hold the cache and the rest is room to grow (the next
        steps write there in place). Nothing is allocated here, so swapping every layer cannot
        fail halfway."""
        self._buffers, self._used = (keys, values), used
        self.keys, self.values = keys[:, :, :used], values[:, :, :used]


def new_cache(model):
    """A DynamicCache whose full-attention layers grow in place (see _GrowingLayer)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    growing = type("GrowingDynamicLayer", (_GrowingLayer, DynamicLayer), {})
    cache = DynamicCache(config=model.config)
    if any(type(layer) is not DynamicLayer for layer in cache.layers):
        raise RuntimeError("batched decoding needs a model with full attention in every layer "
                           f"(this one has {sorted({type(layer).__name__ for layer in cache.layers})})")
    cache.layers = [growing() for _ in cache.layers]
    return cache


@dataclass
class Prefilled:
    """A newcomer after its prompt's forward pass: its cache, and what it has seen so far."""
    cache: object
    length: int
    seen: torch.Tensor  # [1, vocabulary] bool
    first_token: int
    logits_finite: bool


PREFILL_CHUNK_TOKENS = 512


def fast_prefill_dtype(setting: str, model) -> torch.dtype | None:
    """The lower precision a prompt's forward pass runs its matrix products in, or None (the
    model's own). "auto" means bfloat16 for a float32 model on a CPU with native bfloat16 matrix
    units (AMX or AVX512-BF16): a ~940-token prompt then takes 0.44 s instead of 0.87 s here
    (bench/engine_decode.py prints both), while a decode step, a matrix-vector product bound by
    memory, gains nothing and stays float32, which also keeps a row's tokens independent of the
    rows beside it. Without such units bfloat16 is emulated and slower, so "auto" keeps float32."""
    quantized = getattr(model, "hf_quantizer", None) is not None  # a 4-bit base computes in its own dtype
    if setting == "float32" or model.dtype != torch.float32 or quantized:
        return None
    if setting == "bfloat16":
        return torch.bfloat16
    # torch's own probes (private, so a torch without them counts as no support)
    probes = [getattr(torch.cpu, name, lambda: False) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    native = model.device.type == "cpu" and any(probe() for probe in probes)
    return torch.bfloat16 if native else None


class PartialPrefill:
    """A newcomer's prompt going through the model a part at a time into one growing cache (each
    part attends to the ones before it: a prompt in one part is exactly one forward pass, in
    several the same up to floating-point rounding), so the engine can decode the running rows
    between two parts. With ``fast_dtype`` (see :func:`fast_prefill_dtype`) the parts' matrix
    products run under autocast in that precision, except at the prompt's last position: the
    cache is brought back to the model's dtype first, and that position, whose logits choose the
    first token, runs in the model's precision, as the decode steps do."""

    def __init__(self, model, prompt_ids: list[int], adapter: str | None, fast_dtype: torch.dtype | None = None):
        self.adapter = adapter
        self.ids = torch.tensor([prompt_ids], dtype=torch.long, device=model.device)
        self.cache = new_cache(model)
        self.done = 0  # prompt tokens already in the cache
        self.fast_dtype = fast_dtype
        self._model_dtype = model.dtype
        self._logits: torch.Tensor | None = None

    @property
    def remaining(self) -> int:
        return self.ids.shape[1] - self.done

    def advance(self, model, tokens: int) -> int:
        """The next ``tokens`` prompt tokens (at most what remains) through the model, in one
        forward pass (two when a fast dtype is set and the part ends the prompt); returns how many
        went."""
        start, end = self.done, min(self.done + tokens, self.ids.shape[1])
        # With a fast dtype the prompt's last position, whose logits choose the first token, goes in
        # the model's own precision: in bfloat16, 6 of 100 PubMedQA closed-book first tokens
        # (Yes/No/Maybe) differed from float32's; with only that position in float32, none did.
        fast_end = end if self.fast_dtype is None else min(end, self.ids.shape[1] - 1)
        if fast_end > start:
            self._forward(model, fast_end, self.fast_dtype)
        if end > fast_end:
            for layer in self.cache.layers:  # autocast left some layers' keys or values in its dtype
                layer.convert(self._model_dtype)
            self._forward(model, end, None)
        return end - start

    def _forward(self, model, end: int, fast_dtype: torch.dtype | None) -> None:
        positions = torch.arange(self.done, end, dtype=torch.long, device=self.ids.device)[None]
        with torch.autocast(self.ids.device.type, dtype=fast_dtype or torch.bfloat16, enabled=fast_dtype is not None):
            self._logits = forward(model, self.ids[:, self.done:end], self.ids.new_ones((1, end)), self.cache,
                                   [self.adapter], positions)
        self.done = end

    def result(self, vocabulary: int, first_token_choices: tuple[int, ...] = (),
               temperature: float = 0.0) -> Prefilled:
        """The prefilled newcomer, once nothing remains. The first token is chosen as in
        :func:`next_tokens`, or is the likeliest of ``first_token_choices`` when given (a yes/no
        question's "Yes", "No" or "Maybe")."""
        if self.remaining or self._logits is None:
            raise RuntimeError(f"the prompt is not prefilled yet ({self.remaining} tokens remain)")
        logits, device = self._logits, self.ids.device
        seen = torch.zeros((1, vocabulary), dtype=torch.bool, device=device)
        seen[0, self.ids[0]] = True
        if first_token_choices:
            allowed = torch.full_like(logits, float("-inf"))
            choices = torch.tensor(first_token_choices, dtype=torch.long, device=device)
            allowed[0, choices] = logits[0, choices]
            first = int(allowed.argmax(dim=-1)[0])
        else:
            first = int(next_tokens(logits, seen, [temperature])[0])
        return Prefilled(self.cache, self.ids.shape[1], seen, first, bool(torch.isfinite(logits).all()))


def prefill(model, prompt_ids: list[int], adapter: str | None, vocabulary: int,
            first_token_choices: tuple[int, ...] = (), temperature: float = 0.0, *,
            chunk_tokens: int = PREFILL_CHUNK_TOKENS, keep_going: Callable[[], bool] = lambda: True
            ) -> Prefilled | None:
    """The whole prompt through the model, ``chunk_tokens`` at a time (see PartialPrefill).
    ``keep_going()`` is asked before each chunk; False stops there and returns None (the partial
    cache goes with it)."""
    part = PartialPrefill(model, prompt_ids, adapter)
    while part.remaining:
        if not keep_going():
            return None
        part.advance(model, chunk_tokens)
    return part.result(vocabulary, first_token_choices, temperature)


def greedy_tokens(model, prompt_ids: list[int], adapter: str | None, vocabulary: int,
                  count: int) -> tuple[list[int], bool]:
    """``count`` tokens decoded alone from a prompt, and whether the prompt's logits were finite
    (an adapter's smoke test before it serves)."""
    prefilled = prefill(model, prompt_ids, adapter, vocabulary)
    if not prefilled.logits_finite:
        return [], False
    alone = DecodeBatch()
    alone.add(Row(None, adapter, prefilled.length, prefilled.first_token), prefilled)
    return [prefilled.first_token] + [alone.step(model)[0] for _ in range(count - 1)], True


def _pad_left(tensor: torch.Tensor, columns: int, dim: int) -> torch.Tensor:
    if columns <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = columns
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


# A batch's cache changes shape whenever a row joins or leaves. Each change copies it once, into
# a buffer with room to grow: padding and concatenating copied it twice, and the next step's
# update copied it a third time to get that room (a cache of 8 rows of ~1,000 tokens is ~370 MB
# on the default base, so each copy is a transient of that size).

def _joined(mine: torch.Tensor, theirs: torch.Tensor, width: int) -> torch.Tensor:
    """The batch's keys (or values) and a newcomer's as rows of one new buffer, each ending at
    column ``width`` (left-padded with zeros), with spare columns after."""
    out = mine.new_zeros((mine.shape[0] + theirs.shape[0], mine.shape[1], width + _GrowingLayer.SPARE,
                          mine.shape[3]))
    out[:mine.shape[0], :, width - mine.shape[2]:width] = mine
    out[mine.shape[0]:, :, width - theirs.shape[2]:width] = theirs
    return out


def _kept(tensor: torch.Tensor, rows: list[int], start: int) -> torch.Tensor:
    """Some rows of the keys (or values), from column ``start`` on, in a new buffer with spare columns."""
    width = tensor.shape[2] - start
    out = tensor.new_empty((len(rows), tensor.shape[1], width + _GrowingLayer.SPARE, tensor.shape[3]))
    for place, row in enumerate(rows):
        out[place, :, :width] = tensor[row, :, start:]
    return out


class DecodeBatch:
    """The rows being decoded together and their shared, left-padded KV cache."""

    def __init__(self):
        self.rows: list[Row] = []
        self.cache = None
        self.mask: torch.Tensor | None = None  # [rows, columns]: 1 where a row has a real token
        self.seen: torch.Tensor | None = None  # [rows, vocabulary]: tokens each row has seen

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def columns(self) -> int:
        return 0 if self.mask is None else int(self.mask.shape[1])

    def add(self, row: Row, prefilled: Prefilled) -> None:
        """Merge a prefilled newcomer into the batch (shorter side padded on the left). Raises
        with the batch unchanged when the merged cache cannot be built."""
        mask = torch.ones((1, prefilled.length), dtype=torch.long, device=prefilled.seen.device)
        if not self.rows:
            self.rows, self.cache, self.mask, self.seen = [row], prefilled.cache, mask, prefilled.seen
            return
        width = max(self.columns, prefilled.length)
        merged = [(_joined(mine.keys, theirs.keys, width), _joined(mine.values, theirs.values, width))
                  for mine, theirs in zip(self.cache.layers, prefilled.cache.layers)]
        mask = torch.cat([_pad_left(self.mask, width - self.columns, 1),
                          _pad_left(mask, width - prefilled.length, 1)], dim=0)
        seen = torch.cat([self.seen, prefilled.seen], dim=0)
        self._swap_in(merged, width, mask, seen, self.rows + [row])

    def step(self, model) -> list[int]:
        """One forward pass for every row; returns each row's new token (also its next input).
        ``model`` is passed each time: a hot-load may have wrapped the base in a PeftModel."""
        device = self.mask.device
        tokens = torch.tensor([[row.next_token] for row in self.rows], dtype=torch.long, device=device)
        positions = torch.tensor([[row.length] for row in self.rows], dtype=torch.long, device=device)
        self.seen[torch.arange(len(self.rows), device=device), tokens[:, 0]] = True
        self.mask = torch.cat([self.mask, self.mask.new_ones((len(self.rows), 1))], dim=1)
        logits = forward(model, tokens, self.mask, self.cache, [row.adapter for row in self.rows], positions)
        chosen = next_tokens(logits, self.seen, [row.temperature for row in self.rows]).tolist()
        for row, token in zip(self.rows, chosen):
            row.length += 1
            row.next_token = token
        return chosen

    def remove(self, leaving: list[Row]) -> None:
        """Drop rows (finished, cancelled, timed out) and the cache columns nobody uses any more."""
        if not leaving:
            return
        keep = [i for i, row in enumerate(self.rows) if row not in leaving]
        if not keep:
            self.rows, self.cache, self.mask, self.seen = [], None, None, None
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        start = int(mask.any(dim=0).nonzero()[0, 0])  # the first column some remaining row uses
        kept = [(_kept(layer.keys, keep, start), _kept(layer.values, keep, start)) for layer in self.cache.layers]
        self._swap_in(kept, self.columns - start, mask[:, start:], self.seen.index_select(0, index),
                      [self.rows[i] for i in keep])

    def _swap_in(self, layers: list[tuple[torch.Tensor, torch.Tensor]], used: int, mask: torch.Tensor,
                 seen: torch.Tensor, rows: list[Row]) -> None:
        """Install a cache built beside the old one (``used`` columns of each buffer hold it);
        allocates nothing, so it cannot fail halfway."""
        for layer, (keys, values) in zip(self.cache.layers, layers):
            layer.assign(keys, values, used)
        self.mask, self.seen, self.rows = mask, seen, rows
