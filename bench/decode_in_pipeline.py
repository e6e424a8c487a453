"""The chat pipeline's generation against the serving engine alone, in the same run (issue 38,
item 1), for bench/chat_latency.py.

For every answer the model wrote, the engine's own account of it (``Answer.timings``: the decode
steps it took part in) gives its decode tokens/s inside the pipeline, where the request's thread
attributes each sentence beside the engine. The same prompts then go to the same engine directly
(no routing, retrieval, opening, attribution or stop criterion), one at a time, each with as many
new tokens as its answer had: the engine alone's decode tokens/s and its time for that answer.

Issue 38's goals: pipeline decode tokens/s p50 >= 0.9x the engine alone's, and whole answer p50
<= (route + retrieve + the engine alone's time for the answer) p50 + 10%.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from bench.results import print_table, record

WAIT_S = 600
GROUP = "chat, base model on CPU: pipeline vs engine alone"


@dataclass
class Paired:
    """One generated answer in the pipeline and its prompt through the engine alone."""
    pipeline_decode_tps: float
    alone_decode_tps: float
    whole_s: float  # route to the last token, through the pipeline
    bound_s: float  # route + retrieve + the engine alone's seconds for the same prompt and length


def decode_tps(new_tokens: int, decode_s: float) -> float:
    """Tokens after the first one (which comes from the prefill) over the decode steps' time."""
    return (new_tokens - 1) / decode_s if decode_s > 0 else 0.0


def pair_with_engine_alone(engine, answers: list) -> list[Paired]:
    paired = []
    for answer in answers:
        t = answer.timings
        if answer.error or "generate" not in t or answer.new_tokens < 2 or t.get("decode", 0) <= 0:
            continue  # written from the evidence alone, or one token: no decode steps to compare
        handle = engine.submit(answer.prompt, max_new_tokens=answer.new_tokens, timeout_s=WAIT_S)
        handle.text()
        alone = handle.result
        if alone.new_tokens < 2 or alone.decode_s <= 0:
            continue  # the model ended at once without the pipeline's opening: nothing to compare
        whole = t["route"] + t["retrieve"] + t["prompt"] + t["generate"]
        paired.append(Paired(decode_tps(answer.new_tokens, t["decode"]), decode_tps(alone.new_tokens, alone.decode_s),
                             whole, t["route"] + t["retrieve"] + alone.seconds))
    return paired


def report(paired: list[Paired]) -> None:
    title = "Table 1b: the pipeline's generation against the serving engine alone, same prompts, same run"
    if not paired:
        print_table(title, ["measure", "pipeline p50", "engine alone p50", "ratio", "goal"], [],
                    ["no answer decoded more than one token"])
        return
    p50 = {name: statistics.median(getattr(p, name) for p in paired)
           for name in ("pipeline_decode_tps", "alone_decode_tps", "whole_s", "bound_s")}
    decode_ratio = p50["pipeline_decode_tps"] / p50["alone_decode_tps"]
    whole_ratio = p50["whole_s"] / p50["bound_s"]
    rows = [["decode tokens/s (engine steps)", f"{p50['pipeline_decode_tps']:.1f}", f"{p50['alone_decode_tps']:.1f}",
             f"{decode_ratio:.2f}x", ">= 0.90x"],
            ["whole answer s (alone: route + retrieve + engine)", f"{p50['whole_s']:.2f}", f"{p50['bound_s']:.2f}",
             f"{whole_ratio:.2f}x", "<= 1.10x"]]
    print_table(title, ["measure", "pipeline p50", "engine alone p50", "ratio", "goal"], rows,
                [f"{len(paired)} answers that decoded two tokens or more; the engine alone gets each answer's "
                 "prompt (without its written opening) and its number of new tokens"])
    record(GROUP, "decode tokens/s alone, p50", p50["alone_decode_tps"], "tokens/s", better="higher")
    record(GROUP, "decode tokens/s in the pipeline, p50", p50["pipeline_decode_tps"], "tokens/s",
           baseline="decode tokens/s alone, p50", better="higher")
    record(GROUP, "route + retrieve + engine alone, p50", 1000 * p50["bound_s"], "ms", better="lower")
    record(GROUP, "whole answer, p50", 1000 * p50["whole_s"], "ms", baseline="route + retrieve + engine alone, p50",
           better="lower")
