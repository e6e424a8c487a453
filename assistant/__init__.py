"""The assistant: serving a base model with its domain adapters, answering from the evidence, and
the ways people reach it. Sub-packages, lowest first; each imports only from those before it
(tests/test_layering.py holds the order):

- ``settings``, ``bootstrap``, ``markdown_table`` (here): typed settings, first-run setup, one
  table writer; they import nothing else of the assistant.
- ``serving``: the engine that owns the model and its adapters and decodes requests together.
- ``answering``: route, retrieve, write, attribute: a question in, a cited answer out.
- ``evaluation``: ``assistant eval``, which answers exactly as the product does and scores it.
- ``admin``: what an administrator may do (re-index, upload, hot-load, train), without UI code.
- ``web``: the Gradio app, the OpenAI-compatible API, the presenter and the server that starts them.
- ``cli``: the ``assistant`` command.
"""
