"""What the serving engine (assistant/serving/engine.py) keeps about each request it holds, and
its totals since start."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from assistant.serving.generation import GenerationHandle, GenerationRequest

if TYPE_CHECKING:  # only for types: the remote engine keeps stats without torch's imports
    from assistant.serving.decoding import PartialPrefill


@dataclass
class EngineJob:
    """A request inside the engine: its handle and where it stands."""
    handle: GenerationHandle
    generated: int = 0
    adapter: str | None = None
    admitted: bool = False
    steps: int = 0
    rows_seen: int = 0
    tokens: list[int] = field(default_factory=list)  # what it generated, for its stop_when
    prefill: PartialPrefill | None = None  # its prompt on the way into the model, until it joins the batch

    @property
    def request(self) -> GenerationRequest:
        return self.handle.request


@dataclass
class EngineStats:
    """Totals since start, for benchmarks and the admin status."""
    requests: int = 0
    finished: dict[str, int] = field(default_factory=dict)  # stop reason -> count
    refused: int = 0
    prefill_s: float = 0.0
    prefill_tokens: int = 0
    decode_s: float = 0.0
    decode_steps: int = 0
    decode_rows: int = 0  # sum over steps of the rows in the batch
    commands: int = 0
    recoveries: int = 0  # errors outside any one request that failed a batch; the engine went on
