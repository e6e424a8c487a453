"""Supervised fine-tuning data for one domain's adapter, built from its index and graph.

Kinds of example (all in the chat format of adapters/prompts.py):

- ``fact``: a question about a graph fact, answered closed-book (the knowledge goes into the weights);
- ``grounded``: the same question with numbered evidence (the fact among distractor facts, and the
  sentence it was extracted from), answered with a citation, so the adapter learns to use evidence;
- ``yesno``: "Does X r Y?" with evidence, half of them with a swapped, false object;
- ``unanswerable``: evidence that does not hold the answer, answered with prompts.NO_ANSWER;
- ``overview``: "What is <document title>?" answered with the document's opening, the domain's style;
- ``reading``: the product's own prompt for a question (what retrieval returns, the gold among
  its distractors, or left out in a share of them), answered by quoting the evidence and then
  answering (adapters/evidence_reading.py); for a sample of the fact questions and for every
  labelled question of a user file, when the app lends its retrieval (an ``EvidenceReader``);
- ``user``: lines of a user JSONL file (``messages``, or ``prompt``/``completion``; a labelled
  question without retrieval is asked closed-book).

Exact and near-duplicate examples are dropped, then examples are split by a hash of their
*group* (all questions about one subject and relation share a group), so the split is fixed and
no question, paraphrase or answer of a validation fact is ever seen in training.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from tqdm import tqdm

from adapters import prompts
from adapters.dataset_files import META_FILE, TRAIN_FILE, VALIDATION_FILE
from adapters.evidence_reading import EvidenceReader, LabelledQuestion, closed_book_example, reading_examples
from adapters.example import DatasetError, Example, example_id
from adapters.fact_wording import FactLine, fact_sentence
from adapters.params import DatasetParams
from adapters.user_examples import read_user_examples
from indexing.atomic_files import write_text_atomic
from indexing.chunking import split_sentences
from indexing.clean import normalise_text
from indexing.graph_store import Fact, GraphStore
from indexing.near_duplicates import NearDuplicateFilter
from indexing.vector_store import ChunkRow, VectorStore

# Co-occurrence is a statistical link, not a statement a question can be asked about.
UNASKABLE_RELATIONS = {"co_occurs"}
MAX_EXAMPLE_CHARS = 4000
_QA_SHINGLE_WORDS = 2  # questions are short: word pairs, not the corpus's 5-word shingles
_WORD = re.compile(r"[a-z0-9]+")


@dataclass
class DatasetReport:
    domain: str
    folder: Path
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> kind -> n
    exact_duplicates: int = 0
    near_duplicates: int = 0
    facts_used: int = 0
    facts_skipped: int = 0
    graph_error: str | None = None
    user_skipped: list[str] = field(default_factory=list)
    reading_skipped: int = 0  # questions no evidence-reading example could be made for
    data_hash: str = ""

    def total(self, split: str) -> int:
        return sum(self.counts.get(split, {}).values())

    def format(self) -> str:
        lines = [f"{self.domain}: {self.total('train')} train, {self.total('validation')} validation examples "
                 f"in {self.folder}"]
        for split in ("train", "validation"):
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.counts.get(split, {}).items()))
            lines.append(f"  {split}: {kinds or 'none'}")
        lines.append(f"  facts used {self.facts_used}, skipped {self.facts_skipped}; duplicates dropped: "
                     f"{self.exact_duplicates} exact, {self.near_duplicates} near")
        if self.graph_error:
            lines.append(f"  graph unavailable, no fact questions: {self.graph_error}")
        lines += [f"  user file: {reason}" for reason in self.user_skipped]
        if self.reading_skipped:
            lines.append(f"  evidence-reading: {self.reading_skipped} question(s) without usable evidence left out")
        lines.append(f"  data hash {self.data_hash[:16]}")
        return "\n".join(lines)


# --- building ------------------------------------------------------------------------------

def build_dataset(params: DatasetParams, domain: str, graph: GraphStore | None, user_files: Sequence[Path] = (),
                  progress: bool = True, reader: EvidenceReader | None = None) -> DatasetReport:
    """Build, clean, split and write the domain's dataset; returns the report. With ``reader``
    (the app's retrieval) it holds evidence-reading examples too."""
    report = DatasetReport(domain, params.datasets_dir / domain)
    try:
        rows = VectorStore(params.domains_dir).get(domain).rows
    except Exception as exc:  # IndexUnavailable and friends: the message is what matters
        raise DatasetError(f"domain {domain!r} has no usable index ({exc}); run `assistant index` first") from exc
    chunks = {row.chunk_id: row for row in rows}
    facts: list[Fact] = []
    if graph is not None:
        try:
            facts = graph.all_facts(domain)
        except Exception as exc:  # a dead graph server: passages-only data, said in the report
            report.graph_error = str(exc)
    else:
        report.graph_error = "no graph connection"
    askable, report.facts_skipped = select_facts(facts, chunks, params)
    report.facts_used = len(askable)
    examples = fact_examples(domain, askable, chunks, progress=progress)
    examples += overview_examples(domain, rows)
    labelled: list[LabelledQuestion] = []
    for path in user_files:
        user = read_user_examples(domain, path)
        examples += user.examples
        labelled += user.questions
        report.user_skipped += user.skipped
        if user.other_domains:
            report.user_skipped.append(f"{path.name}: {user.other_domains} labelled question(s) of other domains left out")
    if reader is not None:
        reading = [*corpus_questions(askable, chunks, params.dataset_reading_questions), *labelled]
        made, report.reading_skipped = reading_examples(domain, reading, reader, rows, progress)
        examples += made
    else:
        examples += [closed_book_example(domain, question) for question in labelled]
    examples = [e for e in examples if _well_formed(e)]
    examples, report.exact_duplicates, report.near_duplicates = drop_duplicates(examples)
    split_examples(examples, params.dataset_validation_percent)
    write_dataset(report, examples)
    return report


def select_facts(facts: Iterable[Fact], chunks: dict[str, ChunkRow], params: DatasetParams) -> tuple[list[Fact], int]:
    """Facts worth asking about: a real relation, confident, a specific subject, a known source."""
    kept, skipped = [], 0
    common_words = lowercase_words(chunks.values())
    for fact in sorted(facts, key=lambda f: (-f.curated, -f.confidence, -f.count, f.head_key, f.relation, f.tail_key)):
        sources = [chunks[c] for c in fact.chunk_ids if c in chunks]
        if (fact.relation in UNASKABLE_RELATIONS or fact.confidence < params.dataset_min_fact_confidence
                or not sources or not specific_subject(fact.head, sources, common_words)
                or fact.head_key == fact.tail_key):
            skipped += 1
            continue
        kept.append(fact)
    return kept[:params.dataset_max_facts], skipped + max(0, len(kept) - params.dataset_max_facts)


# Words that open a noun phrase pointing back into its passage ("the main remedy", "the usual
# maximum dose"): without an "of ..." such a phrase names nothing a closed-book reader can know.
VAGUE_MODIFIERS = frozenset("""common main typical usual rare official famous important major minor early late final
original second third new old low primary other same such""".split())
# The small words inside a title-case name: "Food and Drug Administration", "Mapp v. Ohio".
NAME_JOINERS = frozenset({"of", "and", "the", "for", "in", "on", "to", "de", "v.", "v", "&"})


def specific_subject(name: str, sources: Sequence[ChunkRow], common_words: set[str]) -> bool:
    """Whether a closed-book question about ``name`` can be understood without its passage.

    "Paul Volcker", "Brown v. Board of Education", "Omeprazole", "Basel III", "type 2 diabetes"
    and "federal funds rate" can. "Member countries" or "Annual inflation" (capitalised only
    because they open a sentence), "Bank" or "Governors" (a common noun the corpus also writes in
    lower case) and a bare "act" or "main remedy" (pointing back into the passage) cannot, unless
    the name is the document's topic ("euro" in "Euro").
    """
    if any(name.lower() == source.title.lower() for source in sources) or any(ch.isdigit() for ch in name):
        return True
    words = name.split()
    if not name[:1].isupper():  # "usual maximum dose" needs its "of metformin"; "heart failure" does not
        return len(words) > 1 and (words[0] not in VAGUE_MODIFIERS or "of" in words[1:-1])
    if len(words) == 1:
        return name.lower() not in common_words
    title_case = all(word[:1].isupper() or word.lower() in NAME_JOINERS for word in words)
    return (title_case or words[0].lower() not in common_words
            or any(_mid_sentence(name, source.text) for source in sources))


def _mid_sentence(name: str, text: str) -> bool:
    """``name`` occurs, as written, after a word, a comma or a bracket: capitalised by choice, not position."""
    return re.search(r"(?<=[\w,;()] )" + re.escape(name) + r"\b", text) is not None


def lowercase_words(rows: Iterable[ChunkRow]) -> set[str]:
    """Every word the corpus writes in lower case: "bank" in "a central bank" makes "Bank" a common noun."""
    return {word for row in rows for word in re.findall(r"\b[a-z][a-z-]+\b", row.text)}


def fact_question(fact: Fact) -> str:
    if fact.relation == "is_a":
        return f"What is {fact.head}?"
    return f"What does {fact.head} {_phrase(fact.relation)}?"


def yes_no_question(fact: Fact, tail: str) -> str:
    if fact.relation == "is_a":
        return f"Is {fact.head} {tail}?"
    return f"Does {fact.head} {_phrase(fact.relation)} {tail}?"


def fact_examples(domain: str, facts: Sequence[Fact], chunks: dict[str, ChunkRow], progress: bool = True) -> list[Example]:
    """Closed-book, grounded, yes/no and unanswerable questions, one group per (subject, relation)."""
    by_group: dict[str, list[Fact]] = defaultdict(list)
    for fact in facts:
        by_group[_group(fact)].append(fact)
    examples: list[Example] = []
    for group, members in tqdm(sorted(by_group.items()), desc=f"dataset {domain}", unit="group",
                               disable=not progress, leave=False):
        rng = random.Random(_stable_int(group))
        first = members[0]
        others = [f for f in facts if _group(f) != group]
        # Closed-book: every object the graph knows for this subject and relation.
        answer = _join_answers([f.tail for f in members[:3]])
        question = fact_question(first)
        examples.append(Example(example_id(group, "fact"), "fact", group,
                                prompts.chat_messages(domain, question, answer=answer), answer, "span",
                                _evidence_ids(members)))
        distractors = rng.sample(others, min(2, len(others)))
        examples.append(_grounded(domain, group, first, distractors, chunks, rng))
        examples.append(_yes_no(domain, group, first, others, chunks, rng))
        if _stable_int(group + "|none") % 6 == 0 and len(others) >= 3:
            examples.append(_unanswerable(domain, group, first, rng.sample(others, 3), chunks))
    return examples


def _grounded(domain: str, group: str, fact: Fact, distractors: list[Fact], chunks: dict[str, ChunkRow],
              rng: random.Random) -> Example:
    facts = [fact, *distractors]
    rng.shuffle(facts)
    passages = [(chunks[fact.chunk_ids[0]].title, supporting_sentence(fact, chunks))] if fact.chunk_ids[0] in chunks else []
    evidence = prompts.number_evidence([f.text for f in facts], passages)
    # the fact in its own words, cited: the sentence a served answer opens with (assistant/answering/fact_answers.py)
    answer = fact_sentence(_line(fact, facts.index(fact) + 1), fact_question(fact))
    return Example(example_id(group, "grounded"), "grounded", group,
                   prompts.chat_messages(domain, fact_question(fact), evidence, answer), fact.tail, "span",
                   list(fact.chunk_ids))


def _yes_no(domain: str, group: str, fact: Fact, others: list[Fact], chunks: dict[str, ChunkRow],
            rng: random.Random) -> Example:
    wrong = [f.tail for f in others if f.relation == fact.relation and f.tail_key != fact.tail_key] or \
            [f.tail for f in others if f.tail_key != fact.tail_key]
    truthful = _stable_int(group + "|yes") % 2 == 0 or not wrong
    tail = fact.tail if truthful else rng.choice(wrong)
    evidence = prompts.number_evidence([fact.text], [])
    answer = prompts.YES if truthful else prompts.NO
    # the label, then what the evidence says (which a "No" contradicts the question with), cited
    reply = f"{answer} {fact_sentence(_line(fact, 1), yes_no_question(fact, tail))}"
    return Example(example_id(group, "yesno"), "yesno", group,
                   prompts.chat_messages(domain, yes_no_question(fact, tail), evidence, reply),
                   answer, "yesno", list(fact.chunk_ids))


def _line(fact: Fact, number: int) -> FactLine:
    return FactLine(number, fact.head, fact.relation, fact.tail)


def _unanswerable(domain: str, group: str, fact: Fact, unrelated: list[Fact], chunks: dict[str, ChunkRow]) -> Example:
    evidence = prompts.number_evidence([f.text for f in unrelated if f.head_key != fact.head_key], [])
    return Example(example_id(group, "unanswerable"), "unanswerable", group,
                   prompts.chat_messages(domain, fact_question(fact), evidence, prompts.NO_ANSWER),
                   prompts.NO_ANSWER, "text", [])


def corpus_questions(facts: Sequence[Fact], chunks: dict[str, ChunkRow], limit: int) -> list[LabelledQuestion]:
    """Up to ``limit`` fact questions (one per subject and relation, a fixed sample) with their
    answers and the documents the facts were read in."""
    by_group: dict[str, list[Fact]] = defaultdict(list)
    for fact in facts:
        by_group[_group(fact)].append(fact)
    chosen = sorted(by_group, key=lambda group: _stable_int(group + "|reading"))[:limit]
    return [LabelledQuestion(group, fact_question(by_group[group][0]), tuple(dict.fromkeys(f.tail for f in by_group[group])),
                             tuple(dict.fromkeys(chunks[c].doc_id for f in by_group[group] for c in f.chunk_ids if c in chunks)))
            for group in sorted(chosen)]


def overview_examples(domain: str, rows: Sequence[ChunkRow]) -> list[Example]:
    """"What is <title>?" answered with the opening sentences of that document: the domain's register."""
    examples, seen = [], set()
    for row in rows:
        if row.doc_id in seen:
            continue
        seen.add(row.doc_id)
        text = row.text.removeprefix("# ").removeprefix(row.title).strip() if row.text.startswith("# ") else row.text
        opening = " ".join(split_sentences(text)[:2]).strip()
        if len(opening) < 40:
            continue
        group = f"doc:{row.doc_id}"
        question = f"What is {row.title}?"
        examples.append(Example(example_id(group, "overview"), "overview", group,
                                prompts.chat_messages(domain, question, answer=opening), opening, "text", [row.chunk_id]))
    return examples


def supporting_sentence(fact: Fact, chunks: dict[str, ChunkRow]) -> str:
    """The sentence of the fact's first chunk that shares most words with the fact."""
    row = chunks[fact.chunk_ids[0]]
    wanted = {w[:5] for w in _WORD.findall(f"{fact.head} {fact.tail}".lower())}
    sentences = split_sentences(row.text) or [row.text]
    return max(sentences, key=lambda s: (len(wanted & {w[:5] for w in _WORD.findall(s.lower())}), -len(s)))


# --- cleaning and splitting ----------------------------------------------------------------

def _well_formed(example: Example) -> bool:
    for message in example.messages:
        message["content"] = normalise_text(message["content"])
    size = sum(len(m["content"]) for m in example.messages)
    return bool(example.answer.strip()) and example.messages[-1]["content"] != "" and size <= MAX_EXAMPLE_CHARS


def drop_duplicates(examples: Sequence[Example], threshold: float = 0.9, permutations: int = 64) -> tuple[list[Example], int, int]:
    """Drop exact duplicates (same kind, question and answer up to case and punctuation), then near
    duplicates (MinHash over question and answer word pairs). Returns kept, exact count, near count."""
    kept, seen, exact = [], set(), 0
    for example in examples:
        if example.dedup_key in seen:
            exact += 1
            continue
        seen.add(example.dedup_key)
        kept.append(example)
    near_filter = NearDuplicateFilter(threshold, permutations, _QA_SHINGLE_WORDS, confirm=False)
    unique = [example for index, example in enumerate(kept) if near_filter.keep(str(index), example.dedup_key) is None]
    return unique, exact, len(kept) - len(unique)


def split_examples(examples: Sequence[Example], validation_percent: int) -> None:
    """Assign each example's split from a hash of its group: fixed across runs and machines."""
    for example in examples:
        example.split = "validation" if _stable_int(example.group) % 100 < validation_percent else "train"


def write_dataset(report: DatasetReport, examples: Sequence[Example]) -> None:
    """Write both splits and the metadata, each file replaced atomically."""
    report.folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    for split, name in (("train", TRAIN_FILE), ("validation", VALIDATION_FILE)):
        chosen = sorted((e for e in examples if e.split == split), key=lambda e: e.id)
        report.counts[split] = dict(Counter(e.kind for e in chosen))
        text = "".join(json.dumps(asdict(e), ensure_ascii=False, sort_keys=True) + "\n" for e in chosen)
        digest.update(text.encode("utf-8"))
        write_text_atomic(report.folder / name, text)
    report.data_hash = digest.hexdigest()
    meta = {"domain": report.domain, "data_hash": report.data_hash, "counts": report.counts,
            "exact_duplicates": report.exact_duplicates, "near_duplicates": report.near_duplicates,
            "facts_used": report.facts_used, "graph_error": report.graph_error}
    write_text_atomic(report.folder / META_FILE, json.dumps(meta, indent=2))


# --- small helpers -------------------------------------------------------------------------

def _phrase(relation: str) -> str:
    return relation.replace("_", " ")


def _group(fact: Fact) -> str:
    return f"fact:{fact.head_key}|{fact.relation}"


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _join_answers(tails: Sequence[str]) -> str:
    unique = list(dict.fromkeys(tails))
    return unique[0] if len(unique) == 1 else ", ".join(unique[:-1]) + " and " + unique[-1]


def _evidence_ids(facts: Sequence[Fact]) -> list[str]:
    return list(dict.fromkeys(c for f in facts for c in f.chunk_ids))
