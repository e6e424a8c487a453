"""The graph walk (Personalized PageRank over the entity-chunk graph), the weighted fusion of
rankings and the one evidence list: pure logic on small hand-made graphs, checked against
networkx's own PageRank, plus the walk file of a real indexed demo version."""

from __future__ import annotations

import shutil

import networkx as nx
import pytest

from assistant.answering.retrieval import (Passage, RankedFact, fuse_rankings, has_lexical_cue, merge_evidence,
                                          on_the_walks_path, scaled_scores, walk_ranked)
from indexing.chunking import Chunk
from indexing.entity_resolution import DomainGraph, EntityRecord, FactRecord
from indexing.graph_store import Fact
from indexing.graph_walk import WALK_FILE, WalkParams, build_walk_graph, read_walk_file, write_walk_file
from indexing.vector_store import Hit, IndexUnavailable, VectorStore
from indexing.versions import DomainVersions


def _chunk(chunk_id: str) -> Chunk:
    doc_id = chunk_id.split("#")[0]
    return Chunk(id=chunk_id, doc_id=doc_id, domain="d", title=doc_id, ordinal=0, text="text", tokens=1)


def _graph(mentions: list[tuple[str, str]], facts: list[tuple[str, str, float]]) -> DomainGraph:
    keys = sorted({key for _, key in mentions} | {k for h, t, _ in facts for k in (h, t)})
    graph = DomainGraph()
    graph.entities = {key: EntityRecord(key, key.title(), "CONCEPT", [], 1) for key in keys}
    graph.mentions = sorted(mentions)
    graph.facts = [FactRecord(h, "related_to", t, c, 1, [], [], False, ["test"]) for h, t, c in facts]
    return graph


# metformin.md names metformin; metformin -> insulin is a fact; insulin.md names insulin and the
# pancreas; heart.md names only the heart. A walk from metformin must reach insulin.md, not heart.md.
CHUNKS = [_chunk("metformin.md#0"), _chunk("insulin.md#0"), _chunk("heart.md#0"), _chunk("pancreas.md#0")]
MENTIONS = [("metformin.md#0", "metformin"), ("insulin.md#0", "insulin"), ("insulin.md#0", "pancreas"),
            ("heart.md#0", "heart"), ("pancreas.md#0", "pancreas")]
FACTS = [("metformin", "insulin", 0.9)]


@pytest.fixture
def walk_graph():
    return build_walk_graph(_graph(MENTIONS, FACTS), CHUNKS)


def test_the_walk_reports_the_probability_of_the_entities_asked_for(walk_graph):
    result = walk_graph.walk({"metformin": 1.0}, {}, WalkParams(), score_keys=["insulin", "heart", "not-in-graph"])
    assert result.entity_scores["insulin"] > 0 and result.entity_scores["heart"] == 0.0
    assert result.entity_scores["not-in-graph"] == 0.0


def test_the_walk_reaches_a_document_only_a_shared_entity_links(walk_graph):
    result = walk_graph.walk({"metformin": 1.0}, {}, WalkParams())
    ranked = [CHUNKS[position].id for position, _ in result.chunk_scores]
    assert ranked[:2] == ["metformin.md#0", "insulin.md#0"]  # one hop through the metformin-insulin fact
    assert ranked.index("pancreas.md#0") == 2  # two hops: insulin.md names the pancreas too
    assert "heart.md#0" not in ranked  # nothing connects it: probability 0, not ranked at all
    assert [node.key for node in result.top_entities][:2] == ["metformin", "insulin"]


def test_the_walk_equals_networkx_personalized_pagerank(walk_graph):
    seeds_entities, seeds_passages = {"metformin": 1.0, "pancreas": 0.5}, {2: 0.8}
    params = WalkParams(damping=0.6, passage_seed_share=0.3, push_threshold=1e-13, max_rounds=200)
    result = walk_graph.walk(seeds_entities, seeds_passages, params)
    nodes, weights = walk_graph._reset(seeds_entities, seeds_passages, params.passage_seed_share)
    graph = nx.from_scipy_sparse_array(walk_graph.adjacency)
    expected = nx.pagerank(graph, alpha=params.damping, personalization=dict(zip(nodes.tolist(), weights)),
                           tol=1e-13, max_iter=500, weight="weight")
    for position, score in result.chunk_scores:
        assert score == pytest.approx(expected[position], abs=1e-9)
    assert sum(weights) == pytest.approx(1.0)


def test_a_name_many_chunks_share_weighs_less_than_a_specific_one():
    chunks = [_chunk(f"d{i}.md#0") for i in range(5)]
    mentions = [(c.id, "diabetes") for c in chunks] + [("d4.md#0", "sanger")]
    walk_graph = build_walk_graph(_graph(mentions, []), chunks)
    reset = dict(zip(*walk_graph._reset({"diabetes": 1.0, "sanger": 1.0}, {}, 0.5)))
    diabetes, sanger = (reset[walk_graph.entity_position[k]] for k in ("diabetes", "sanger"))
    assert sanger == pytest.approx(5 * diabetes)  # 1 chunk against 5: weight 1/1 against 1/5
    ranked = walk_graph.walk({"diabetes": 1.0, "sanger": 1.0}, {}, WalkParams()).chunk_scores
    assert ranked[0][0] == 4  # the chunk naming the specific entity wins


def _with_a_chain(length: int):
    """The metformin graph with a chain of ``length`` chunks hanging off heart.md: link i names
    entity i and i + 1, so the chain is connected to the rest of the graph from one end."""
    chain = [_chunk(f"chain{i}.md#0") for i in range(length)]
    mentions = MENTIONS + [("heart.md#0", "c0"), ("insulin.md#0", "heart")]
    mentions += [(chunk.id, key) for i, chunk in enumerate(chain) for key in (f"c{i}", f"c{i + 1}")]
    return build_walk_graph(_graph(mentions, FACTS), CHUNKS + chain)


def test_the_walks_work_follows_what_it_touches_not_the_graphs_size():
    seeds = ({"metformin": 1.0}, {0: 1.0})
    near, far = _with_a_chain(2_000), _with_a_chain(20_000)
    walked_near, walked_far = near.walk(*seeds, WalkParams()), far.walk(*seeds, WalkParams())
    assert walked_near.edges_pushed == walked_far.edges_pushed  # ten times the graph, the same work
    assert walked_far.edges_pushed < near.adjacency.nnz / 10
    assert walked_near.chunk_scores == walked_far.chunk_scores
    reached = {near.chunk_ids[position] for position, _ in walked_near.chunk_scores}
    assert "chain1.md#0" in reached and "chain1999.md#0" not in reached  # the probability fades along the chain


def test_a_round_over_most_of_the_graph_is_one_product_with_the_same_result():
    graph = _with_a_chain(50)
    seeds = ({"metformin": 1.0, "c7": 0.5}, {0: 1.0, 30: 0.2})
    one_by_one = graph.walk(*seeds, WalkParams(dense_share=2.0))  # never dense
    products = graph.walk(*seeds, WalkParams(dense_share=0.0))  # every round dense
    assert products.edges_pushed > one_by_one.edges_pushed
    assert [p for p, _ in products.chunk_scores] == [p for p, _ in one_by_one.chunk_scores]
    for (_, a), (_, b) in zip(products.chunk_scores, one_by_one.chunk_scores):
        assert a == pytest.approx(b, rel=1e-9)


def test_asking_for_the_best_passages_gives_the_head_of_the_whole_ranking():
    graph = _with_a_chain(40)
    seeds = ({"metformin": 1.0, "c20": 0.5}, {0: 1.0, 30: 0.2, 31: 0.2})
    everything = graph.walk(*seeds, WalkParams()).chunk_scores
    assert len(everything) > 8
    for keep in (0, 1, 5, 8, len(everything), len(everything) + 3):
        assert graph.walk(*seeds, WalkParams(), top_passages=keep).chunk_scores == everything[:keep]


def test_no_seed_in_the_graph_means_no_walk(walk_graph):
    result = walk_graph.walk({"unknown entity": 1.0}, {99: 1.0}, WalkParams())
    assert result.chunk_scores == [] and result.top_entities == []


def test_named_chunks_are_multi_word_names_with_their_mention_counts():
    chunks = [_chunk(f"d{i}.md#0") for i in range(3)]
    mentions = [(c.id, "federal reserve") for c in chunks] + [("d0.md#0", "sdr"), ("d1.md#0", "mount washington hotel")]
    walk_graph = build_walk_graph(_graph(mentions, [("sdr", "world bank group", 0.9)]), chunks)
    # "world bank group" is only in a fact, never mentioned in a chunk: it names no passage
    assert walk_graph.named_chunks() == {"federal reserve": 3, "mount washington hotel": 1}
    assert walk_graph.named_chunks(min_words=3) == {"mount washington hotel": 1}


def test_walk_file_round_trip_and_checksum(tmp_path, walk_graph):
    files = write_walk_file(tmp_path, walk_graph)
    assert set(files) == {WALK_FILE} and len(files[WALK_FILE]) == 64
    loaded = read_walk_file(tmp_path)
    assert loaded.chunk_ids == walk_graph.chunk_ids and loaded.entity_keys == walk_graph.entity_keys
    assert (loaded.adjacency != walk_graph.adjacency).nnz == 0
    seeds = ({"metformin": 1.0}, {1: 0.5})
    assert loaded.walk(*seeds, WalkParams()) == walk_graph.walk(*seeds, WalkParams())


def test_parallel_facts_add_their_weights():
    walk_graph = build_walk_graph(_graph([("a.md#0", "a")], [("a", "b", 0.5), ("b", "a", 0.25)]), [_chunk("a.md#0")])
    a, b = walk_graph.entity_position["a"], walk_graph.entity_position["b"]
    assert walk_graph.adjacency[a, b] == pytest.approx(0.75) == walk_graph.adjacency[b, a]


# --- fusion and the one evidence list ----------------------------------------------------------

def _hit(chunk_id: str, score: float = 1.0) -> Hit:
    return Hit(chunk_id, chunk_id.split("#")[0], "T", "text", score, "d", "v1")


def test_weighted_fusion_lets_a_heavier_list_decide():
    dense, lexical = [_hit("a#1"), _hit("b#1")], [_hit("b#1"), _hit("a#1")]
    even = fuse_rankings({"dense": (1.0, dense), "lexical": (1.0, lexical)}, rrf_k=60)
    assert even[0].score == even[1].score  # mirror images tie (then chunk id order)
    heavy = fuse_rankings({"dense": (1.0, dense), "lexical": (2.0, lexical)}, rrf_k=60)
    assert [p.chunk_id for p in heavy] == ["b#1", "a#1"]
    assert heavy[0].score == pytest.approx(1 / 62 + 2 / 61, abs=1e-6)
    walked = fuse_rankings({"dense": (1.0, dense), "walk": (1.0, [_hit("c#1")])}, rrf_k=60)
    assert {p.chunk_id: p.walk_rank for p in walked} == {"a#1": None, "b#1": None, "c#1": 1}
    assert fuse_rankings({"dense": (0.0, dense)}, rrf_k=60)[0].score == 0.0


def test_seed_weights_scale_each_list_to_one_unit_whatever_its_scores():
    cosines = scaled_scores([_hit("a#1", 0.82), _hit("b#1", 0.62), _hit("c#1", 0.42)])
    bm25 = scaled_scores([_hit("a#1", 31.0), _hit("b#1", 16.0), _hit("c#1", 1.0)])
    # The same order and spacing on two scales gives the same restart; the list's last gets none.
    assert [(h.chunk_id, round(w, 6)) for h, w in cosines] == [("a#1", 0.666667), ("b#1", 0.333333)]
    assert [round(w, 6) for _, w in bm25] == [round(w, 6) for _, w in cosines]
    assert [w for _, w in scaled_scores([_hit("a#1", 0.5), _hit("b#1", 0.5)])] == [0.5, 0.5]  # a tie shares
    assert scaled_scores([]) == []


def test_the_walk_ranking_is_the_passage_list_with_every_vote_at_its_rank():
    dense, lexical = [_hit("b#1"), _hit("a#1")], [_hit("a#1")]
    walked = [_hit("c#1", 0.3), _hit("a#1", 0.2), _hit("b#1", 0.1)]  # c: only the graph reached it
    rankings = {"dense": (1.0, dense), "lexical": (1.0, lexical)}
    passages = walk_ranked(walked, rankings, walk_weight=1.0, rrf_k=60)
    assert [p.chunk_id for p in passages] == ["c#1", "a#1", "b#1"]  # the walk's order, not the fused one
    assert passages[0].score == pytest.approx(3 / 61, abs=1e-6) and passages[2].score == pytest.approx(3 / 63, abs=1e-6)
    assert [(p.dense_rank, p.lexical_rank, p.walk_rank) for p in passages] == [(None, None, 1), (2, 1, 2), (1, None, 3)]
    # Its scores sit on the fused scale: a first fact (1/61) follows five passages, as with fusion.
    five = walk_ranked([_hit(f"{c}#1") for c in "abcde"], rankings, 1.0, 60)
    merged = merge_evidence([_fact("f1")], five, fact_weight=1.0, rrf_k=60, budget=6)
    assert isinstance(merged[5], RankedFact) and all(isinstance(e, Passage) for e in merged[:5])


def _passage(chunk_id: str, score: float) -> Passage:
    return Passage(chunk_id, chunk_id.split("#")[0], "T", "text", "d", score, 1, None)


def _fact(name: str) -> RankedFact:
    return RankedFact(Fact(name, name, "is_a", "x", "x", 1.0, 1, (), (f"{name}.md",), False, 1), "d", 0.5)


def test_one_evidence_list_interleaves_by_score_and_cuts_at_the_budget():
    passages = [_passage("a#1", 3 / 61), _passage("b#1", 1 / 61), _passage("c#1", 1 / 70)]
    facts = [_fact("f1"), _fact("f2")]
    merged = merge_evidence(facts, passages, fact_weight=1.0, rrf_k=60, budget=4)
    assert [getattr(e, "chunk_id", None) or e.fact.head for e in merged] == ["a#1", "b#1", "f1", "f2"]
    assert len(merge_evidence(facts, passages, 1.0, 60, budget=10)) == 5  # each item once
    heavy = merge_evidence(facts, passages, fact_weight=4.0, rrf_k=60, budget=2)
    assert [e.fact.head for e in heavy] == ["f1", "f2"]  # 4/61 and 4/62 beat every passage
    # A spread passage order (document-spread, not by score) is kept: places, not scores, decide.
    spread = [_passage("a#1", 1 / 70), _passage("b#1", 3 / 61)]
    assert [e.chunk_id for e in merge_evidence([], spread, 1.0, 60, 5)] == ["a#1", "b#1"]


@pytest.mark.parametrize("question, cue", [
    ("What HbA1c level is used to diagnose diabetes?", True), ("Below which eGFR value?", True),
    ("What did the Act of 1933 require?", True), ("Who wrote the 10-K?", True),
    ("Who discovered penicillin?", False), ("What does the Federal Reserve do?", False)])
def test_numbers_and_codes_are_lexical_cues(question, cue):
    assert has_lexical_cue(question) is cue


# --- a real version ------------------------------------------------------------------------------

def test_an_indexed_version_has_a_checked_walk_graph(demo_env):
    index = VectorStore(demo_env.settings.domains_dir).get("medicine")
    assert WALK_FILE in index.manifest["files"]
    walk_graph = index.walk_graph
    assert walk_graph.chunk_ids == [row.chunk_id for row in index.rows]
    assert len(walk_graph.entity_keys) > 100 and walk_graph.adjacency.nnz > 0
    key = next(k for k in walk_graph.entity_keys if k == "insulin")
    result = walk_graph.walk({key: 1.0}, {}, WalkParams())
    top_docs = {index.rows[position].doc_id for position, _ in result.chunk_scores[:5]}
    assert "insulin.md" in top_docs
    assert 0 < sum(score for _, score in result.chunk_scores) < 1  # the rest of the probability is on entities


def test_a_damaged_walk_file_makes_the_domain_unavailable(demo_env, tmp_path):
    shutil.copytree(demo_env.settings.domains_dir / "medicine", tmp_path / "medicine")
    version_dir = DomainVersions(tmp_path, "medicine").current_path()
    with open(version_dir / WALK_FILE, "r+b") as f:
        f.seek(100)
        f.write(b"\x00\xff\x00\xff")
    with pytest.raises(IndexUnavailable, match="walk.npz is corrupted"):
        VectorStore(tmp_path).get("medicine")


def _ranked_fact(head: str, tail: str, score: float) -> RankedFact:
    return RankedFact(Fact(head, head, "related_to", tail, tail, 1.0, 1, (), (f"{head}.md",), False, 1), "d", score)


def test_facts_on_the_walks_path_rise_above_the_first_entitys_neighbours():
    around = _ranked_fact("metformin", "diarrhoea", 0.70)  # the walk never reached diarrhoea
    bridge = _ranked_fact("metformin", "insulin", 0.60)  # both ends where the walk gathered
    reached = {("d", "metformin"): 0.30, ("d", "insulin"): 0.10, ("d", "diarrhoea"): 0.0, ("law", "diarrhoea"): 0.9}
    assert [f.fact.tail for f in on_the_walks_path([around, bridge], reached, weight=0.2)] == ["insulin", "diarrhoea"]
    assert on_the_walks_path([around, bridge], reached, weight=0.2)[0].score == pytest.approx(0.80)
    # a small weight leaves a clear similarity lead alone; no walk probability leaves the order
    assert [f.fact.tail for f in on_the_walks_path([around, bridge], reached, weight=0.05)] == ["diarrhoea", "insulin"]
    assert on_the_walks_path([around, bridge], {}, weight=1.0) == [around, bridge]
