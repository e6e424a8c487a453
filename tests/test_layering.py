"""The packages form layers that only look down: indexing → adapters → assistant → entry points
(launch.py, bench/, scripts/), and inside assistant its parts do too: its base modules
(settings, bootstrap, markdown_table) → serving → answering → evaluation → admin → web → cli.
Read from the source with ``ast``, every import counted, those inside functions and under
TYPE_CHECKING too, so a cycle cannot hide in a late import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("indexing", "adapters", "assistant")  # lowest first
ASSISTANT_PARTS = ("", "serving", "answering", "evaluation", "admin", "web", "cli")  # lowest first; "": its base modules
ASSISTANT_BASE = {"assistant", "assistant.settings", "assistant.bootstrap", "assistant.markdown_table"}
MAX_MODULE_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imported(tree: ast.AST, modules: dict[str, Path]) -> set[str]:
    """The project modules a module imports: ``from a.b import c`` is a.b, or a.b.c when c is a module."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name in modules}


def import_graph() -> nx.DiGraph:
    modules = _modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        for target in _imported(ast.parse(path.read_text(), str(path)), modules):
            if target != name:
                graph.add_edge(name, target)
    return graph


def _layer(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


def test_every_import_goes_to_the_same_layer_or_one_below():
    upward = sorted(f"{a} imports {b}" for a, b in import_graph().edges if _layer(b) > _layer(a))
    assert upward == []


def _part(module: str) -> int:
    """Where an assistant module sits among ASSISTANT_PARTS: its sub-package, or 0 for a base module."""
    parts = module.split(".")
    return ASSISTANT_PARTS.index(parts[1]) if len(parts) > 1 and parts[1] in ASSISTANT_PARTS else 0


def _downward_in_assistant(graph: nx.DiGraph) -> list[str]:
    return sorted(f"{a} imports {b}" for a, b in graph.edges
                  if a.startswith("assistant") and b.startswith("assistant") and _part(b) > _part(a))


def test_the_assistants_parts_import_only_their_own_and_those_below():
    """Serving knows nothing of answering; answering nothing of evaluation, admin, the web or the
    CLI; the web and the CLI sit on top."""
    assert _downward_in_assistant(import_graph()) == []


def test_every_assistant_module_is_in_a_part():
    """A new module goes into the sub-package that owns its concern, not beside the base modules."""
    flat = {name for name in _modules() if name.startswith("assistant") and _part(name) == 0}
    assert flat == ASSISTANT_BASE


def test_the_parts_check_sees_a_violation():
    graph = import_graph()
    assert graph.has_edge("assistant.answering.pipeline", "assistant.serving.engine_base")
    graph.add_edge("assistant.answering.pipeline", "assistant.web.presenter")
    assert _downward_in_assistant(graph) == ["assistant.answering.pipeline imports assistant.web.presenter"]


def test_no_module_imports_itself_through_others():
    cycles = sorted(" -> ".join(cycle + cycle[:1]) for cycle in nx.simple_cycles(import_graph()))
    assert cycles == []


def test_the_checks_see_upward_imports_and_cycles():
    """The graph is built from real edges: known ones are there, and a planted cycle is found."""
    graph = import_graph()
    assert graph.has_edge("assistant.settings", "indexing.params")
    assert graph.has_edge("adapters.train", "adapters.evaluate")
    graph.add_edge("adapters.evaluate", "adapters.train")
    assert any(set(cycle) == {"adapters.train", "adapters.evaluate"} for cycle in nx.simple_cycles(graph))


@pytest.mark.parametrize("package,higher", [("indexing", ("adapters", "assistant")), ("adapters", ("assistant",))])
def test_importing_a_lower_package_loads_nothing_from_a_higher_one(package, higher):
    """The same at run time: import every module of the package in a fresh interpreter."""
    modules = sorted(name for name in _modules() if name.split(".")[0] == package)
    assert _loaded_after_importing(modules, higher) == []


@pytest.mark.parametrize("part", ["serving", "answering"])
def test_importing_a_lower_part_of_the_assistant_loads_nothing_above_it(part):
    modules = sorted(name for name in _modules() if name.startswith(f"assistant.{part}"))
    higher = tuple(f"assistant.{above}" for above in ASSISTANT_PARTS[ASSISTANT_PARTS.index(part) + 1:])
    loaded = _loaded_after_importing(modules, ("assistant",))
    assert [name for name in loaded if name.startswith(higher)] == []


def test_no_product_module_is_over_the_size_limit():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_training_imports_none_of_the_indexing_stack():
    """The GPU check (scripts/gpu_check_device.sh) runs bench/train_speed.py on a machine with only
    the model's packages: training and the settings must not pull in spaCy, FAISS or a graph driver."""
    indexing_stack = ("spacy", "faiss", "neo4j", "falkordb", "redis", "bm25s", "rapidfuzz", "datasketch", "pypdf",
                      "selectolax", "networkx", "gradio")
    assert _loaded_after_importing(["adapters.train", "adapters.base_model", "assistant.settings"], indexing_stack) == []


def _loaded_after_importing(modules: list[str], watched: tuple[str, ...]) -> list[str]:
    """Which modules of the ``watched`` top-level packages a fresh interpreter has loaded once it
    has imported ``modules``."""
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n    importlib.import_module(name)\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {watched!r}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return ast.literal_eval(done.stdout.strip().splitlines()[-1])
