"""The chat pipeline's generation against the serving engine alone, in the same run (issue 38,
item 1), for bench/chat_latency.py.

While the pipeline answers, :class:`SubmissionLog` records what it submits to the engine (the
messages and every argument: the written opening as ``answer_prefix``, the stop criterion, the
first-token choices). For every answer the model wrote, the engine's own account of it
(``Answer.timings``: the decode steps it took part in) gives its decode tokens/s inside the
pipeline. Then the same submissions go to the same engine again, directly, one at a time, with
nothing else running: greedy decoding gives the same tokens, so the two differ only in what ran
beside them. Reported: decode tokens/s from the steps' time, and the whole answer against route +
retrieve + the engine alone's time for the same submission.

Issue 38's goals: pipeline decode tokens/s p50 >= 0.9x the engine alone's, and whole answer p50
<= (route + retrieve + the engine alone's time for the answer) p50 + 10%.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from bench.results import print_table, record

WAIT_S = 600
GROUP = "chat, base model on CPU: pipeline vs engine alone"


class SubmissionLog:
    """Wraps ``engine.submit`` (this process's engine only) to keep each call's arguments."""

    def __init__(self, engine):
        self.engine, self.calls = engine, []
        self._submit = engine.submit
        engine.submit = self._recorded

    def _recorded(self, messages, **options):
        self.calls.append((messages, options))
        return self._submit(messages, **options)

    def taken(self) -> list[tuple[list[dict], dict]]:
        """The calls since the last time this was asked."""
        calls, self.calls = self.calls, []
        return calls

    def replay(self, call: tuple[list[dict], dict]):
        messages, options = call
        options = {**options, "cancel": None, "timeout_s": WAIT_S}
        handle = self._submit(messages, **options)
        handle.text()
        return handle.result


@dataclass
class Paired:
    """One generated answer in the pipeline and its submission replayed on the engine alone."""
    pipeline_decode_tps: float
    alone_decode_tps: float
    whole_s: float  # route to the last token, through the pipeline
    bound_s: float  # route + retrieve + the engine alone's seconds for the same submission (issue 38's bound)
    same_tokens: bool


def decode_tps(new_tokens: int, decode_s: float) -> float:
    """Tokens after the first one (which comes from the prefill) over the decode steps' time."""
    return (new_tokens - 1) / decode_s if decode_s > 0 else 0.0


def pair_with_engine_alone(log: SubmissionLog, answers: list, submissions: list[list]) -> list[Paired]:
    """``submissions[i]``: what the pipeline submitted for ``answers[i]`` (the last call counts:
    an adapter's answer that gave way to the written opening is submitted again)."""
    paired = []
    for answer, calls in zip(answers, submissions):
        t = answer.timings
        if answer.error or not calls or "generate" not in t or answer.new_tokens < 2 or t.get("decode", 0) <= 0:
            continue  # written from the evidence alone, or one token: no decode steps to compare
        alone = log.replay(calls[-1])
        if alone.new_tokens < 2 or alone.decode_s <= 0:
            continue
        whole = t["route"] + t["retrieve"] + t["prompt"] + t["generate"]
        paired.append(Paired(decode_tps(answer.new_tokens, t["decode"]), decode_tps(alone.new_tokens, alone.decode_s),
                             whole, t["route"] + t["retrieve"] + alone.seconds,
                             alone.new_tokens == answer.new_tokens))
    return paired


def report(paired: list[Paired]) -> None:
    title = "Table 1b: the pipeline's generation against the serving engine alone, the same submissions, same run"
    header = ["measure", "pipeline p50", "engine alone p50", "ratio", "goal"]
    if not paired:
        print_table(title, header, [], ["no answer decoded more than one token"])
        return
    p50 = {name: statistics.median(getattr(p, name) for p in paired)
           for name in ("pipeline_decode_tps", "alone_decode_tps", "whole_s", "bound_s")}
    decode_ratio = p50["pipeline_decode_tps"] / p50["alone_decode_tps"]
    whole_ratio = p50["whole_s"] / p50["bound_s"]
    rows = [["decode tokens/s (engine steps)", f"{p50['pipeline_decode_tps']:.1f}", f"{p50['alone_decode_tps']:.1f}",
             f"{decode_ratio:.2f}x", ">= 0.90x"],
            ["whole answer s (alone: route + retrieve + engine)", f"{p50['whole_s']:.2f}",
             f"{p50['bound_s']:.2f}", f"{whole_ratio:.2f}x", "<= 1.10x"]]
    print_table(title, header, rows,
                [f"{len(paired)} answers that decoded two tokens or more, each submission replayed as the pipeline "
                 f"made it (prefix, stop criterion, first-token choices); the same number of tokens in "
                 f"{sum(p.same_tokens for p in paired)} of them"])
    record(GROUP, "decode tokens/s alone, p50", p50["alone_decode_tps"], "tokens/s", better="higher")
    record(GROUP, "decode tokens/s in the pipeline, p50", p50["pipeline_decode_tps"], "tokens/s",
           baseline="decode tokens/s alone, p50", better="higher")
    record(GROUP, "route + retrieve + engine alone, p50", 1000 * p50["bound_s"], "ms", better="lower")
    record(GROUP, "whole answer, p50", 1000 * p50["whole_s"], "ms", baseline="route + retrieve + engine alone, p50",
           better="lower")
