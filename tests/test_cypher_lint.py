"""Every Neo4j-dialect statement in indexing/cypher.py passes Neo4j's own Cypher front-end.

No Neo4j server runs here, so the statements go through Neo4j's parser and semantic analysis
compiled to JavaScript (npm @neo4j-cypher/language-support, pinned in tests/cypher_lint/), in
CYPHER 5 mode, against Neo4j's built-in functions and procedures: an unknown procedure (such as
FalkorDB's db.idx.*), an undefined variable or a wrong argument count is an error.

The statements are found by walking the module: every UPPER_CASE string constant, every value
of an UPPER_CASE dict, and ``cypher.NEO4J.index_statements()``. One node process lints them all,
together with canaries that must be reported, so a broken install cannot pass.

Needs node and ``make install`` (npm ci in tests/cypher_lint); without them the test is skipped
with the reason, unless REQUIRE_NODE=1 (set by .ci/run), where a missing linter fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

from indexing import cypher

LINT_DIR = Path(__file__).parent / "cypher_lint"
LINT_SCRIPT = LINT_DIR / "lint.mjs"
PACKAGE = "@neo4j-cypher/language-support"
NODE = shutil.which("node")


def _linter_problem() -> str | None:
    """Why the linter cannot run here, or None."""
    if NODE is None:
        return "no node on PATH (apt-get install -y nodejs npm, then make install)"
    installed = LINT_DIR / "node_modules" / PACKAGE / "package.json"
    if not installed.exists():
        return f"{PACKAGE} is not installed in {LINT_DIR} (run make install)"
    wanted = json.loads((LINT_DIR / "package.json").read_text())["dependencies"][PACKAGE]
    have = json.loads(installed.read_text())["version"]
    if have != wanted:
        return f"{PACKAGE} {have} is installed but package.json pins {wanted} (run make install)"
    return None


def skip_without_linter() -> None:
    """Skip this module when node or the npm package is missing, unless REQUIRE_NODE=1 (.ci/run),
    where that is an error (same pattern as REQUIRE_BROWSER in tests/conftest.py)."""
    problem = _linter_problem()
    if problem:
        if os.environ.get("REQUIRE_NODE") == "1":
            raise RuntimeError(f"REQUIRE_NODE=1 but the Cypher linter cannot run: {problem}")
        pytest.skip(f"{problem}; the Cypher lint test is skipped", allow_module_level=True)


skip_without_linter()


def neo4j_statements() -> dict[str, str]:
    """Every statement the Neo4j dialect can send, by a readable name."""
    found: dict[str, str] = {}
    for name, value in sorted(vars(cypher).items()):
        if not name.isupper():
            continue
        if isinstance(value, str):
            found[name] = value
        elif isinstance(value, dict):
            for key, statement in value.items():
                assert isinstance(statement, str), f"{name}[{key!r}] is not a statement string"
                found[f"{name}[{key}]"] = statement
    for index, statement in enumerate(cypher.NEO4J.index_statements()):
        found[f"NEO4J.index_statements()[{index}]"] = statement
    return found


STATEMENTS = neo4j_statements()

# Wrong on Neo4j 5, each for a different reason; each must come back as an error containing the
# text given. The first two are the required canaries (missing procedure registry, dead parser);
# the others show the semantic analysis and the CYPHER 5 mode are really in use (the package
# silently returns no semantic errors if its semantic analysis throws, so this matters).
CANARIES = {
    "falkordb-procedure": ("CALL db.idx.fulltext.createNodeIndex('Entity', 'name')",
                           "Procedure db.idx.fulltext.createNodeIndex is not present in the database"),
    "syntax-error": ("MATCH (n RETURN n", "Invalid input 'RETURN'"),
    "undefined-variable": ("MATCH (n:Entity {domain: $domain}) RETURN m.name AS name", "Variable `m` not defined"),
    "unknown-function": ("MATCH (n:Entity) RETURN no_such_function(n.key) AS k",
                         "Function no_such_function is not present in the database"),
    "wrong-argument-count": ("RETURN toInteger($x, 2) AS n", "Too many parameters for function 'toInteger'"),
    "plugin-not-built-in": ("RETURN apoc.text.clean($x) AS s", "Function apoc.text.clean is not present"),
    "negative-limit": ("MATCH (n) WITH n LIMIT -1 RETURN n", "Must be a non-negative integer"),
    # LET is Cypher 25 only: an error here shows the statements are read as CYPHER 5.
    "cypher-25-only": ("LET x = 1 RETURN x", "Invalid input 'LET'"),
    "two-statements": ("RETURN 1 AS a; RETURN 2 AS b", "expected exactly one statement"),
}

# Neo4j built-ins the canaries' neighbours use: these must pass, so the registry is not "reject all".
ACCEPTED = {
    "builtin-procedure": "CALL db.index.fulltext.queryNodes('entity_names', $q) YIELD node, score RETURN node, score",
    "builtin-functions": "MATCH (n:Entity) RETURN elementId(n) AS id, coalesce(n.name, '') AS name, count(*) AS c",
    "cypher-5-prefix": "CYPHER 5 MATCH (n:Entity) RETURN n.key AS key",
}


@pytest.fixture(scope="module")
def lint_results() -> dict[str, list[dict]]:
    """One node process for every statement, canary and control; diagnostics by name."""
    named = {**STATEMENTS, **{f"canary:{k}": s for k, (s, _) in CANARIES.items()},
             **{f"accepted:{k}": s for k, s in ACCEPTED.items()}}
    completed = subprocess.run([NODE, str(LINT_SCRIPT)], cwd=LINT_DIR, input=json.dumps(list(named.values())),
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, f"lint.mjs failed:\n{completed.stderr}"
    results = json.loads(completed.stdout)
    assert len(results) == len(named)
    return {name: result["diagnostics"] for name, result in zip(named, results)}


def _errors(diagnostics: list[dict]) -> list[dict]:
    return [d for d in diagnostics if d["severity"] == "error"]


def _show(diagnostics: list[dict]) -> str:
    return "\n".join(f"  {d['severity']} at {d['line']}:{d['column']}: {d['message']}" for d in diagnostics)


def test_walk_finds_every_kind_of_statement():
    assert {"PING", "WRITE_FACTS", "FACTS_FROM", "DELETE_VERSION_BATCH[Entity]", "STATS[relations]",
            "NEO4J.index_statements()[0]"} <= set(STATEMENTS)
    # FalkorDB's index statements are not part of the Neo4j dialect.
    assert not set(cypher.FALKORDB.index_statements()) & set(STATEMENTS.values())


@pytest.mark.parametrize("name", list(STATEMENTS))
def test_statement_is_valid_neo4j_5_cypher(lint_results, name):
    diagnostics = lint_results[name]
    # Warnings (none are raised by the current statements) are shown, not failed: Neo4j runs
    # the statement anyway, e.g. a deprecated function still works in Neo4j 5.
    others = [d for d in diagnostics if d["severity"] != "error"]
    if others:
        warnings.warn(f"Cypher lint on {name}:\n{_show(others)}", stacklevel=1)
    errors = _errors(diagnostics)
    assert not errors, f"{name} is not valid Neo4j 5 Cypher:\n{_show(errors)}\n{STATEMENTS[name]}"


@pytest.mark.parametrize("name", list(CANARIES))
def test_canary_is_reported_as_an_error(lint_results, name):
    statement, expected = CANARIES[name]
    errors = _errors(lint_results[f"canary:{name}"])
    assert any(expected in d["message"] for d in errors), (
        f"the linter let {statement!r} through (wanted an error containing {expected!r}); got:\n{_show(errors)}")


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_neo4j_built_ins_are_accepted(lint_results, name):
    errors = _errors(lint_results[f"accepted:{name}"])
    assert not errors, f"{ACCEPTED[name]!r} should be valid:\n{_show(errors)}"
