"""How people and programs reach the assistant over HTTP: the Gradio app (``ui``, components and
wiring only), ``presenter`` (an answer as people read it), ``guards`` (request limits in front of
Gradio), the OpenAI-compatible API (``openai_api``, ``openai_protocol``, ``openai_raw``,
``openai_transport``) and ``server``, which starts them all in one process. Imports ``admin``,
``answering`` and ``serving``; nothing below imports it.
"""
