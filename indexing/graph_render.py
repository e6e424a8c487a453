"""Pictures of a subgraph (networkx layout, matplotlib drawing) for the CLI and the chat.

Each picture is its own ``matplotlib.figure.Figure`` on an Agg canvas, never pyplot's global
figure list: the chat draws from several threads at once, and pyplot's state is not thread-safe.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # networkx imports pyplot: it must never open a window

import networkx as nx  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from indexing.graph_store import Subgraph  # noqa: E402

_TYPE_COLOURS = {"PERSON": "#f4a261", "ORG": "#2a9d8f", "GPE": "#8ab17d", "LAW": "#e76f51", "DATE": "#b8b8d1",
                 "CONCEPT": "#a8dadc"}


def to_networkx(subgraph: Subgraph) -> nx.MultiDiGraph:
    graph = nx.MultiDiGraph()
    for node in subgraph.nodes:
        graph.add_node(node["key"], label=node["name"], type=node["type"])
    for edge in subgraph.edges:
        graph.add_edge(edge["head"], edge["tail"], label=edge["relation"].replace("_", " "), confidence=edge["confidence"])
    return graph


def draw_subgraph(subgraph: Subgraph, out: Path, title: str = "", focus: set[str] | None = None) -> Path:
    """Write a PNG of the subgraph; ``focus`` nodes (the linked entities) are drawn larger."""
    graph = to_networkx(subgraph)
    focus = focus or set()
    size = max(6.0, min(16.0, 2.0 + 0.6 * graph.number_of_nodes()))
    figure = Figure(figsize=(size, size * 0.75))
    FigureCanvasAgg(figure)  # the figure draws to a PNG through this canvas (no pyplot, no window)
    axes = figure.add_subplot()
    if graph.number_of_nodes():
        layout = nx.spring_layout(graph, seed=7, k=1.6 / max(1, graph.number_of_nodes()) ** 0.5)
        colours = [_TYPE_COLOURS.get(graph.nodes[n].get("type"), "#cccccc") for n in graph.nodes]
        sizes = [1800 if n in focus else 900 for n in graph.nodes]
        nx.draw_networkx_nodes(graph, layout, node_color=colours, node_size=sizes, ax=axes, edgecolors="#333333")
        labels = {n: textwrap.fill(graph.nodes[n].get("label", n), 18) for n in graph.nodes}
        nx.draw_networkx_labels(graph, layout, labels=labels, font_size=8, ax=axes)
        nx.draw_networkx_edges(graph, layout, ax=axes, arrows=True, arrowsize=14, node_size=sizes,
                               connectionstyle="arc3,rad=0.08", edge_color="#555555")
        edge_labels = {(u, v): d["label"] for u, v, d in graph.edges(data=True)}
        nx.draw_networkx_edge_labels(graph, layout, edge_labels=edge_labels, font_size=7, ax=axes,
                                     connectionstyle="arc3,rad=0.08")
    else:
        axes.text(0.5, 0.5, "no facts found", ha="center", va="center")
    axes.set_title(title)
    axes.axis("off")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110, bbox_inches="tight")
    return out
