"""Entity resolution and fact aggregation (hand-made mentions; the real embedder for names)."""

from __future__ import annotations

import random
import string

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rapidfuzz import fuzz, process

from indexing.entity_keys import canonical_key
from indexing.entity_resolution import FusionParams, FuzzyStats, _fuzzy_pairs, _may_be_same, fuse, max_edits
from indexing.extraction import ChunkExtraction, EntityMention, RelationMention


def entity(chunk, doc, name, type_="CONCEPT"):
    return EntityMention(chunk, doc, name, canonical_key(name), type_, 0)


def relation(chunk, doc, head, rel, tail, confidence=0.7, pattern="svo"):
    return RelationMention(chunk, doc, head, canonical_key(head), rel, tail, canonical_key(tail), confidence, pattern)


@pytest.mark.parametrize("a,b", [("The Statins", "statin"), ("ACE inhibitors", "ACE inhibitor"),
                                 ("U.S. Supreme Court", "US supreme court"), ("Fleming's", "fleming")])
def test_canonical_keys_ignore_case_articles_plural_and_punctuation(a, b):
    assert canonical_key(a) == canonical_key(b)


@pytest.mark.parametrize("a,b", [("COX-1", "COX-2"), ("Type 1 diabetes", "Type 2 diabetes"), ("pancreas", "pancrea")])
def test_canonical_keys_keep_different_things_apart(a, b):
    assert canonical_key(a) != canonical_key(b)


def test_same_thing_named_differently_in_two_documents_becomes_one_entity(embedder):
    doc_a = ChunkExtraction("a#1", "a.md", [entity("a#1", "a.md", "Alexander Fleming", "PERSON"),
                                            entity("a#1", "a.md", "penicillin")],
                            [relation("a#1", "a.md", "Alexander Fleming", "discover", "penicillin")])
    doc_b = ChunkExtraction("b#1", "b.md", [entity("b#1", "b.md", "Alexander Flemming", "PERSON"),
                                            entity("b#1", "b.md", "U.S. Supreme Court", "ORG"),
                                            entity("b#1", "b.md", "angiotensin-converting enzyme"),
                                            entity("b#1", "b.md", "ACE", "ORG")],
                            [relation("b#1", "b.md", "ACE", "abbreviation_of", "angiotensin-converting enzyme",
                                      0.8, "abbreviation")])
    doc_c = ChunkExtraction("c#1", "c.md", [entity("c#1", "c.md", "Supreme Court of the United States", "ORG"),
                                            entity("c#1", "c.md", "ACE", "ORG")],
                            [relation("c#1", "c.md", "captopril", "inhibit", "ACE")])
    graph = fuse([doc_a, doc_b, doc_c], encode=embedder.encode)
    fleming = graph.entities[graph.key_map["alexander flemming"]]
    assert graph.key_map["alexander fleming"] == fleming.key
    assert {fleming.name, *fleming.aliases} == {"Alexander Fleming", "Alexander Flemming"}
    court = graph.key_map["us supreme court"]
    assert court == graph.key_map["supreme court of the united states"]
    assert graph.key_map["ace"] == "angiotensin-converting enzyme"  # the long form names the entity
    assert "ACE" in graph.entities["angiotensin-converting enzyme"].aliases
    fact = next(f for f in graph.facts if f.relation == "inhibit")
    assert fact.tail == "angiotensin-converting enzyme"  # facts follow the merge
    assert not any(f.relation == "abbreviation_of" for f in graph.facts)  # aliases are not facts


def test_different_things_with_similar_names_stay_apart(embedder):
    names = ["Type 1 diabetes", "Type 2 diabetes", "COX-1", "COX-2", "Federal Reserve", "Federal Reserve Act",
             "First Amendment", "Fifth Amendment", "Fourteenth Amendment"]
    extraction = ChunkExtraction("x#1", "x.md", [entity("x#1", "x.md", n, "ORG") for n in names], [])
    graph = fuse([extraction], encode=embedder.encode)
    assert len(graph.entities) == len(names)


def test_facts_aggregate_evidence_from_several_documents():
    mentions = [ChunkExtraction(f"{d}#1", f"{d}.md", [], [relation(f"{d}#1", f"{d}.md", "aspirin", "inhibit",
                                                                   "cyclooxygenase", 0.5)]) for d in ("a", "b")]
    curated = [relation(None, "triples.csv", "aspirin", "treat", "fever", 1.0, "curated")]
    graph = fuse(mentions, curated)
    inhibit = next(f for f in graph.facts if f.relation == "inhibit")
    assert inhibit.count == 2 and inhibit.confidence == pytest.approx(0.75)
    assert inhibit.doc_ids == ["a.md", "b.md"] and inhibit.chunk_ids == ["a#1", "b#1"] and not inhibit.curated
    treat = next(f for f in graph.facts if f.relation == "treat")
    assert treat.curated and treat.confidence == 1.0 and treat.chunk_ids == [] and treat.doc_ids == ["triples.csv"]


def test_one_off_terms_are_dropped_but_recurring_terms_and_named_entities_stay():
    chunks = [ChunkExtraction("a#1", "a.md", [entity("a#1", "a.md", "blood pressure"), entity("a#1", "a.md", "nice weather"),
                                              entity("a#1", "a.md", "Paris", "GPE")], []),
              ChunkExtraction("b#1", "b.md", [entity("b#1", "b.md", "blood pressure")], [])]
    graph = fuse(chunks)
    assert set(graph.entities) == {"blood pressure", "paris"}
    assert ("a#1", "nice weather") not in graph.mentions


def test_source_overlap_gamma():
    def chunk(source, names):
        return ChunkExtraction(f"{source}#1", f"{source}/doc.md", [entity(f"{source}#1", f"{source}/doc.md", n, "PRODUCT") for n in names], [])

    graph = fuse([chunk("u", ["aspirin", "fever", "pain"]), chunk("v", ["aspirin", "fever", "warfarin", "bleeding"])],
                 source_of=lambda doc_id: doc_id.split("/")[0], params=FusionParams())
    assert graph.source_overlap == {("u", "v"): pytest.approx(2 / 5)}


# --- fuzzy matching in bounded memory ----------------------------------------------------------

def full_matrix_pairs(keys: list[str], params: FusionParams) -> list[tuple[str, str]]:
    """The reference: fuzzy matching as it was before row blocks, one key x key score matrix."""
    if len(keys) < 2:
        return []
    scores = process.cdist(keys, keys, scorer=fuzz.ratio, score_cutoff=params.fuzzy_min_ratio, workers=1)
    rows, cols = np.nonzero(scores)
    return [(keys[i], keys[j]) for i, j in zip(rows, cols) if i < j and _may_be_same(keys[i], keys[j], params)]


def typo(word: str, rng: random.Random) -> str:
    at = rng.randrange(len(word))
    edit = rng.choice(("substitute", "delete", "insert"))
    if edit == "substitute":
        return word[:at] + rng.choice(string.ascii_lowercase) + word[at + 1:]
    if edit == "delete":
        return word[:at] + word[at + 1:]
    return word[:at] + rng.choice(string.ascii_lowercase) + word[at:]


def entity_keys(n: int, seed: int = 7) -> list[str]:
    """Sorted unique names of 2-3 random words, some with a number, a third with a one-letter
    typo variant: many pairs pass the default cutoff, a typo in the first letter sorts far away."""
    rng = random.Random(seed)
    vocabulary = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 10))) for _ in range(400)]
    keys: set[str] = set()
    while len(keys) < n:
        key = " ".join(rng.choices(vocabulary, k=rng.randint(2, 3)))
        if rng.random() < 0.1:
            key += f" {rng.randint(1, 9)}"
        keys.add(key)
        if rng.random() < 0.33:
            keys.add(typo(key, rng))
    return sorted(keys)[:n]


@hypothesis_settings(max_examples=200, deadline=None)
@given(keys=st.lists(st.text(alphabet="aab 12", max_size=14), max_size=40),
       cutoff=st.sampled_from([0.0, 40.0, 66.5, 80.0, 85.0, 92.0, 95.0, 100.0]),
       min_key_length=st.integers(0, 5), block_cells=st.integers(-1, 2000))
def test_fuzzy_pairs_equal_the_full_matrix(keys, cutoff, min_key_length, block_cells):
    # unsorted keys, duplicates, empty keys, a budget under one row: the same pairs in the same order
    params = FusionParams(fuzzy_min_ratio=cutoff, min_key_length=min_key_length, fuzzy_block_cells=block_cells)
    assert list(_fuzzy_pairs(keys, params)) == full_matrix_pairs(keys, params)


@hypothesis_settings(max_examples=100, deadline=None)
@given(words=st.lists(st.text(alphabet="abcab", min_size=3, max_size=9), min_size=2, max_size=6),
       edits=st.lists(st.tuples(st.integers(0, 60), st.sampled_from("abcx ")), max_size=4),
       cutoff=st.sampled_from([85.0, 90.0, 92.0, 96.0]))
def test_long_keys_a_few_edits_apart_are_found_exactly(words, edits, cutoff):
    """Keys long enough to be cut into several pieces, with their variants a few insertions,
    deletions and substitutions away: where the segment filter has to find a shifted piece."""
    base = " ".join(words)
    keys = [base]
    for at, letter in edits:
        variant = keys[-1]
        at %= len(variant) + 1
        keys += [variant[:at] + letter + variant[at:], variant[:at] + variant[at + 1:], variant[:at] + letter + variant[at + 1:]]
    keys = sorted(set(keys))
    params = FusionParams(fuzzy_min_ratio=cutoff)
    assert list(_fuzzy_pairs(keys, params)) == full_matrix_pairs(keys, params)


def test_the_segment_filter_scores_a_small_share_of_all_pairs():
    keys = entity_keys(2500)
    params = FusionParams()
    stats = FuzzyStats()
    pairs = list(_fuzzy_pairs(keys, params, stats))
    assert pairs == full_matrix_pairs(keys, params) and len(pairs) > 100
    assert stats.brute_force_rows == 0 and stats.blocks == 0  # at ratio 92 every key of 1+ letters has pieces
    assert stats.candidates < 0.01 * len(keys) * (len(keys) - 1) / 2


@pytest.mark.parametrize("length,cutoff,edits", [(0, 92, 0), (5, 92, 0), (6, 92, 1), (12, 92, 2), (40, 92, 6),
                                                 (10, 100, 0), (10, 50, 11), (3, 0, 4)])
def test_max_edits(length, cutoff, edits):
    # at 92: d <= 0.08 (la + lb) and lb <= la * 1.08 / 0.92, so d <= 0.1739 la
    assert max_edits(length, cutoff) == edits


@pytest.mark.parametrize("budget", [10_000, 200_000, 1_000_000])
def test_each_score_array_stays_within_the_budget(budget):
    """At a low cutoff no key can be cut into pieces (40: up to 3x its length in edits), so every
    key is scored against all of them, in blocks within the budget."""
    keys = entity_keys(3000)
    stats = FuzzyStats()
    pairs = list(_fuzzy_pairs(keys, FusionParams(fuzzy_min_ratio=40, fuzzy_block_cells=budget), stats))
    assert pairs == full_matrix_pairs(keys, FusionParams(fuzzy_min_ratio=40))
    rows, cols = stats.largest_block
    assert rows * cols <= budget and cols == len(keys)
    assert stats.brute_force_rows == len(keys) and stats.cells == len(keys) ** 2


def test_a_budget_under_one_row_scores_one_row_at_a_time():
    keys = entity_keys(500)
    stats = FuzzyStats()
    list(_fuzzy_pairs(keys, FusionParams(fuzzy_min_ratio=40, fuzzy_block_cells=100), stats))
    assert stats.largest_block == (1, 500) and stats.blocks == 500


def test_fuse_merges_the_same_spelling_variants_whatever_the_block_size():
    keys = entity_keys(600)
    extraction = ChunkExtraction("x#1", "x.md", [EntityMention("x#1", "x.md", k, k, "ORG", 0) for k in keys], [])
    one_block = fuse([extraction])  # 600 x 600 cells fit the default budget: the whole matrix at once
    assert len(one_block.entities) < len(keys) - 20  # typo variants did merge
    row_by_row = fuse([extraction], params=FusionParams(fuzzy_block_cells=1))
    assert row_by_row.key_map == one_block.key_map


def test_the_demo_corpora_merge_exactly_as_with_all_pairs(demo_env, monkeypatch):
    """The segment filter changes which pairs are scored, never which merge: on each demo domain's
    saved extractions, fusion gives the same entities as scoring every pair."""
    from indexing import entity_resolution
    from indexing.version_reuse import EXTRACTIONS_FILE, load_extractions
    from indexing.versions import DomainVersions

    for domain in ("finance", "law", "medicine"):
        version_dir = DomainVersions(demo_env.settings.domains_dir, domain).current_path()
        extractions = list(load_extractions(version_dir / EXTRACTIONS_FILE).values())
        filtered = fuse(extractions)
        with monkeypatch.context() as patched:
            patched.setattr(entity_resolution, "_fuzzy_pairs", lambda keys, params, stats=None: full_matrix_pairs(keys, params))
            everything = fuse(extractions)
        assert filtered.key_map == everything.key_map and len(filtered.entities) > 500
        assert [f.triple for f in filtered.facts] == [f.triple for f in everything.facts]


def test_name_neighbours_from_hnsw_match_the_exact_search():
    """Above embedding_exact_max_keys the paraphrase candidates come from HNSW: on planted
    near-duplicate vectors it finds what the flat search finds."""
    from indexing.entity_resolution import _embedding_pairs

    keys = entity_keys(3000)
    rng = np.random.default_rng(18)
    base = {key: rng.standard_normal(64) for key in keys}
    for left, right in zip(keys, keys[1:]):  # neighbours in sort order share a first word: plant paraphrases
        if left.split()[0] == right.split()[0] and rng.random() < 0.3:
            base[right] = base[left] + 0.05 * rng.standard_normal(64)

    def encode(texts):
        vectors = np.array([base[t] for t in texts], dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    params = FusionParams(embedding_min_overlap=0.0)
    exact = set(_embedding_pairs(keys, encode, params))
    approximate = set(_embedding_pairs(keys, encode, FusionParams(embedding_min_overlap=0.0, embedding_exact_max_keys=0)))
    assert len(exact) > 100
    assert len(exact & approximate) >= 0.98 * len(exact) and len(approximate - exact) <= 0.02 * len(exact)
