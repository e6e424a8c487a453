"""Serving the model: one engine thread owns the base model and its LoRA adapters and decodes every
active request together (``engine``, ``decoding``), behind the interface callers use
(``engine_base``, ``generation`` handles, ``waiting_line``); ``adapter_pool`` loads, checks and
swaps adapters between decode steps; ``remote_engine`` is the same interface over a generation
server. Imports only ``assistant.settings`` and the lower packages (``adapters``, ``indexing``):
it knows nothing of questions, evidence or the web.
"""
