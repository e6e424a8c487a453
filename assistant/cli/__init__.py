"""The ``assistant`` command: ``main`` (the table of sub-commands), ``chat`` (ask and chat in a
terminal) and ``adapters`` (adapters, datasets, training). The top of the assistant: it may
import every other part. ``python -m assistant.cli`` and the ``assistant`` script run
``assistant.cli.main:main``.
"""
