"""Hostile files (issue 15): inputs made to cost the reader time or to get past a name check.

* HTML whose tags are built to make a regex backtrack: the nesting pre-scan's work, counted in
  characters examined (never timed), stays under 3 per character of the page, and the scan finds
  exactly the tags the regex it replaced found.
* A JSONL line nested 100,000 deep: that line is skipped with a reason, the rest is read.
* An adapter whose manifest claims a domain no index could have, or whose weights hold a tensor
  that is not a LoRA weight: refused by validation, by install, and in the registry listing.
* Name rules checked with ``$`` accept a trailing newline; each rule refuses "name\\n".
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from adapters.registry import ADAPTER_NAME, AdapterInvalid, AdapterRegistry, validate_adapter
from assistant.serving.adapter_pool import _VERSION
from conftest import write_lora_adapter
from indexing.corpus import DOMAIN_NAME, MAX_HTML_DEPTH, HtmlTagScanner, html_depth_exceeds, read_corpus
from indexing.versions import _VERSION_NAME, DomainVersions

# --- the HTML nesting pre-scan -------------------------------------------------------------------

# The regex the scanner replaced, kept here only as the reference for what a tag is: on '<' and a
# long run of letters with no '>' it backtracks through every shorter name (quadratic).
OLD_HTML_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9:-]*)[^<>]*?(/?)>")
REFERENCE_MAX_CHARS = 2_000  # the reference is quadratic: keep its inputs short

FRAGMENTS = ["<", ">", "/", "a", "div", "<a", "</", "/>", "<a/>", "</div>", "<br/>", " ", "=", '"', "'", "x=1",
             "Z9", ":", "-", "\n", "<!--", "-->", "<!DOCTYPE html>", "<<", ">>", "é"]
PIECES = st.one_of(st.sampled_from(FRAGMENTS), st.integers(1, 400).map(lambda n: "a" * n), st.text(max_size=6))
HTML_TEXT = st.lists(PIECES, max_size=60).map("".join)


def scan(html: str) -> tuple[list[tuple[bool, str, bool]], int]:
    scanner = HtmlTagScanner(html)
    tags = list(scanner.tags())
    return tags, scanner.examined


def assert_linear(html: str, examined: int) -> None:
    """Every character is looked at at least once (so the count is real) and at most three times."""
    assert len(html) <= examined <= 3 * len(html), (len(html), examined)


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(HTML_TEXT.map(lambda html: html[:REFERENCE_MAX_CHARS]))
@example("<a<>")  # a '>' right after the next '<' still ends no tag
@example("<a<b>")
@example("<a/><b / ></B:x-1 c='/'>")
@example("</ a></>< a><a//>")
@example("<" + "a" * REFERENCE_MAX_CHARS)
def test_the_tag_scanner_finds_what_the_old_regex_found(html):
    tags, examined = scan(html)
    expected = [(closing == "/", name, self_closing == "/")
                for closing, name, self_closing in (m.groups() for m in OLD_HTML_TAG.finditer(html))]
    assert tags == expected
    assert_linear(html, examined)


# Long pages made of one adversarial unit repeated, then a tail. Half the units lose their '>'s,
# so that many names wait for one far '>' (where a search restarted per '<' would be quadratic).
UNITS = st.tuples(st.lists(PIECES, min_size=1, max_size=12).map("".join), st.booleans()).map(
    lambda unit: unit[0].replace(">", "") if unit[1] else unit[0])


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(UNITS, st.integers(1, 20_000), st.sampled_from(["", ">", "/>", "<a>", "</a>"]) | PIECES)
def test_the_tag_scanner_examines_each_character_at_most_three_times(unit, repeats, tail):
    html = unit * repeats + tail
    tags, examined = scan(html)
    assert_linear(html, examined)


# Hand-made worst cases: names with no '>' after them (what froze the app), '<' after '<', many
# names before one far '>' (a '>' search restarted at every '<' would be quadratic), deep nesting.
WORST_HTML = {
    "one name of 200,000 letters": "<" + "a" * 200_000,
    "100,000 short names": "<a" * 100_000,
    "100,000 names, then one '>'": "<a " * 100_000 + ">",
    "100,000 '<'": "<" * 100_000,
    "100,000 '</'": "</" * 100_000,
    "100,000 end tags": "</a>" * 100_000,
    "100,000 nested divs": "<div>" * 100_000,
    "a long attribute": "<a " + "x" * 200_000 + ">",
}


@pytest.mark.parametrize("html", list(WORST_HTML.values()), ids=list(WORST_HTML))
def test_worst_case_html_is_scanned_in_linear_work(html):
    tags, examined = scan(html)
    assert_linear(html, examined)


def test_nesting_is_still_judged_from_the_tags():
    assert html_depth_exceeds("<div>" * (MAX_HTML_DEPTH + 1), MAX_HTML_DEPTH)
    assert not html_depth_exceeds("<div>" * MAX_HTML_DEPTH + "</div>" * MAX_HTML_DEPTH, MAX_HTML_DEPTH)
    assert not html_depth_exceeds("<div/>" * 1000 + "<p>" * 1000 + "</div>" * 2000, MAX_HTML_DEPTH)
    assert not html_depth_exceeds("<div" * (MAX_HTML_DEPTH + 1), MAX_HTML_DEPTH)  # no '>': no tags


def test_a_200_kb_name_without_an_end_is_read_after_a_linear_scan(tmp_path):
    folder = tmp_path / "site"
    folder.mkdir()
    page = "<" + "a" * 200_000
    (folder / "long-name.html").write_text(page)
    (folder / "ok.md").write_text("# Fine\nAn ordinary page beside it.\n")
    result = read_corpus(folder)
    # lexbor drops a tag the file ends inside: the page is read, with no text in it
    assert not result.skipped and sorted(d.id for d in result.documents) == ["long-name.html", "ok.md"]
    assert next(d.text for d in result.documents if d.id == "long-name.html") == ""
    tags, examined = scan(page)
    assert tags == [] and len(page) <= examined <= 2 * len(page)  # the '<' search and the name: once each


# --- deeply nested JSONL lines -------------------------------------------------------------------

def test_a_deeply_nested_jsonl_line_is_skipped_and_the_rest_is_read(tmp_path):
    folder = tmp_path / "law"
    folder.mkdir()
    lines = [json.dumps({"id": "first", "text": "Magna Carta was sealed in 1215."}),
             "[" * 100_000,
             '{"id": "x", "text": ' * 100_000,
             '{"id": "deep-field", "text": "t", "extra": ' + "[" * 100_000 + "]" * 100_000 + "}",
             json.dumps({"id": "last", "text": "The First Amendment protects speech."})]
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "note.md").write_text("# Note\nA file after the JSONL is still read.\n")
    result = read_corpus(folder)
    assert sorted(d.id for d in result.documents) == ["first", "last", "note.md"]
    reasons = {s.source.rsplit("/", 1)[-1]: s.reason for s in result.skipped}
    assert reasons == {f"corpus.jsonl:{n}": "JSON nested too deeply to read" for n in (2, 3, 4)}


# --- adapters that claim too much ----------------------------------------------------------------

@pytest.fixture(scope="module")
def lora_folder(base_model, tmp_path_factory):
    folder = write_lora_adapter(base_model, tmp_path_factory.mktemp("hostile-adapter") / "finance-v1", "finance", seed=41)
    validate_adapter(folder, base_model)  # unedited, it is valid: each refusal below is the edit's
    return folder


@pytest.fixture
def candidate(lora_folder, tmp_path):
    target = tmp_path / "candidate"
    shutil.copytree(lora_folder, target)
    return target


def assert_refused_everywhere(folder, base_model, registry_root, reason: str) -> None:
    """Refused by validation and by install, and shown as broken (never listed) when it is found
    in the registry folder itself."""
    with pytest.raises(AdapterInvalid, match=reason):
        validate_adapter(folder, base_model)
    registry = AdapterRegistry(registry_root)
    with pytest.raises(AdapterInvalid, match=reason):
        registry.install(folder, "finance-v2", base_model)
    assert not (registry_root / "finance-v2").exists()
    shutil.copytree(folder, registry_root / "finance-v3")
    assert registry.list() == []
    [broken] = registry.broken()
    assert broken.name == "finance-v3" and re.search(reason, broken.problem), broken.problem


@pytest.mark.parametrize("domain", ["../etc", "Law\n", "law\n", "a" * 100, "law.v2", "fin ance"])
def test_an_adapter_claiming_an_invalid_domain_is_refused(candidate, base_model, tmp_path, domain):
    manifest = json.loads((candidate / "manifest.json").read_text())
    manifest["domain"] = domain
    (candidate / "manifest.json").write_text(json.dumps(manifest))
    assert_refused_everywhere(candidate, base_model, tmp_path / "registry",
                              re.escape(f"domain {domain!r} is not a valid domain name"))


LORA_A = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"


@pytest.mark.parametrize("extra", ["base_model.model.lm_head.weight", "base_model.model.model.embed_tokens.weight",
                                   "base_model.model.model.layers.0.self_attn.q_proj.weight", LORA_A + "\n",
                                   "weights"])
def test_an_adapter_with_a_tensor_that_is_not_lora_is_refused(candidate, base_model, tmp_path, extra):
    weights_path = candidate / "adapter_model.safetensors"
    weights = load_file(str(weights_path))
    assert LORA_A in weights  # the key the newline variant copies is a real one
    weights[extra] = torch.zeros(4, 4)
    save_file(weights, str(weights_path))
    assert_refused_everywhere(candidate, base_model, tmp_path / "registry",
                              re.escape(f"tensor {extra!r} is not a LoRA weight"))


# --- name rules and trailing newlines ------------------------------------------------------------

# (rule, how the code applies it, a name it takes, the same name with a trailing newline)
NAME_RULES = {
    "domain (indexing.corpus.DOMAIN_NAME)": (DOMAIN_NAME.match, "law", "law\n"),
    "adapter (adapters.registry.ADAPTER_NAME)": (ADAPTER_NAME.match, "law-v1", "law-v1\n"),
    "index version (indexing.versions._VERSION_NAME)": (_VERSION_NAME.match, "v000001", "v000001\n"),
    "adapter version (assistant.serving.adapter_pool._VERSION)": (_VERSION.search, "law-v3", "law-v3\n"),
}


@pytest.mark.parametrize("check,good,bad", list(NAME_RULES.values()), ids=list(NAME_RULES))
def test_name_rules_refuse_a_trailing_newline(check, good, bad):
    assert check(good) is not None
    assert check(bad) is None


def test_the_registry_refuses_an_adapter_name_with_a_newline(tmp_path):
    registry = AdapterRegistry(tmp_path / "registry")
    assert registry.path("law-v1") == tmp_path / "registry" / "law-v1"
    with pytest.raises(AdapterInvalid, match="not a valid adapter name"):
        registry.path("law-v1\n")


def test_an_index_version_folder_named_with_a_newline_is_not_a_version(tmp_path):
    versions = DomainVersions(tmp_path / "domains", "law")
    (versions.versions_dir / "v000002").mkdir(parents=True)
    (versions.versions_dir / "v000009\n").mkdir()
    assert versions.all_versions() == ["v000002"]
    assert versions.next_version() == "v000003"


# --- curated triples that cannot be read -----------------------------------------------------------

@pytest.mark.parametrize("content", ["[" * 100_000 + "\n", '{"head": "a", "relation": "r"}\n', "\xff\xfe".encode("latin-1")],
                         ids=["nested 100,000 deep", "a row without its tail", "not UTF-8"])
def test_bad_curated_triples_fail_their_domain_with_the_reason_and_the_serving_version_stays(
        settings, store, embedder, tmp_path, content):
    from indexing.pipeline import index_source

    folder = tmp_path / "law"
    folder.mkdir()
    (folder / "charter.md").write_text("# Charter\nMagna Carta was sealed by King John in 1215.\n")
    first = index_source(settings.indexing_params, folder, "law", progress=False, embedder=embedder, graph=store).domains[0]
    assert first.error is None and first.version == "v000001"
    triples = folder / "triples.jsonl"
    triples.write_bytes(content if isinstance(content, bytes) else content.encode())
    failed = index_source(settings.indexing_params, folder, "law", progress=False, embedder=embedder, graph=store).domains[0]
    assert failed.error and str(triples) in failed.error and failed.previous_version == "v000001"
    assert DomainVersions(settings.domains_dir, "law").current() == "v000001"
    assert store.stats("law")["documents"] == 1
