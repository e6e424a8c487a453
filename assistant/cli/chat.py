"""The ``assistant ask`` and ``chat`` commands: one question, or a terminal conversation, answered
by the chat pipeline with its evidence."""

from __future__ import annotations

import argparse
import sys

from assistant.settings import load_settings


def _open_pipeline(settings):
    """The chat pipeline over the local data dir; without a graph (said on stderr) if it is down."""
    from assistant.answering.pipeline import ChatPipeline
    from assistant.serving.engine_base import share_cores_with_engine
    from indexing.graph_connection import GraphConnection, GraphError
    from indexing.graph_store import GraphStore

    share_cores_with_engine(settings)  # before any torch work (indexing/openmp_threads.py)
    try:
        connection = GraphConnection.open(settings.graph_params)
        graph = GraphStore(connection, settings.domains_dir)
    except GraphError as exc:
        print(f"warning: knowledge graph unavailable, answering from passages only ({exc})", file=sys.stderr)
        connection, graph = None, None
    try:
        return ChatPipeline.create(settings, graph), connection
    except BaseException:  # loading the model failed or was stopped: stop the graph server started above
        if connection:
            connection.close()
        raise


def _print_answer(answer, show_evidence: bool) -> None:
    adapter = answer.adapter or "base model"
    where = answer.domain or "all domains (router abstained)"
    print(f"\n[{where}, confidence {answer.confidence:.2f}, {adapter}; "
          + ", ".join(f"{k} {v:.2f}s" for k, v in answer.timings.items()) + "]")
    for note in answer.notes:
        print(f"note: {note}")
    if answer.sentences:  # what was streamed, after attribution: the answer as the chat shows it
        print(f"answer: {answer.text}")
    if show_evidence:
        for index, sentence in enumerate(answer.sentences, 1):
            cites = ", ".join(f"[{n}]" for n in sentence.citations) or "nothing"
            state = "supported" if sentence.supported else "UNSUPPORTED"
            print(f"  sentence {index}: {state} (support {sentence.score:.2f}), cites {cites}")
        for fact in answer.facts:
            print(f"  [{answer.evidence_number(fact)}] fact: {fact.text}  ({', '.join(fact.titles) or '-'}; "
                  f"chunk {fact.fact.chunk_ids[0] if fact.fact.chunk_ids else '-'})")
        for passage in answer.passages:
            print(f"  [{answer.evidence_number(passage)}] {passage.title} ({passage.chunk_id}): {passage.text[:160]}...")


def cmd_ask(args: argparse.Namespace) -> int:
    from assistant.answering.pipeline import Answer

    pipeline, connection = _open_pipeline(load_settings())
    try:
        answer = None
        for item in pipeline.stream(args.question, domain=args.domain):
            if isinstance(item, Answer):
                answer = item
            else:
                print(item, end="", flush=True)
        if answer.error and not answer.text:
            print(answer.text)
        _print_answer(answer, args.show_evidence)
        return 1 if answer.error else 0
    finally:
        pipeline.engine.close()
        if connection:
            connection.close()


def cmd_chat(args: argparse.Namespace) -> int:
    from assistant.answering.pipeline import Answer

    pipeline, connection = _open_pipeline(load_settings())
    history: list[dict] = []
    print("Ask a question (empty line or Ctrl-D to quit).")
    try:
        while True:
            try:
                question = input("\nyou> ").strip()
            except EOFError:
                break
            if not question:
                break
            print("assistant> ", end="", flush=True)
            for item in pipeline.stream(question, history, domain=args.domain):
                if isinstance(item, Answer):
                    _print_answer(item, args.show_evidence)
                    history += [{"role": "user", "content": question}, {"role": "assistant", "content": item.text}]
                else:
                    print(item, end="", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        pipeline.engine.close()
        if connection:
            connection.close()
    return 0
