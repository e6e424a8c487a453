"""What an administrator may do, with no UI code: ``service`` (log in, list, re-index, upload,
hot-load, roll back, unload, train, status), long work as ``jobs`` with progress, ``sessions`` and
their throttling, the ``password``, checked ``uploads``, and the two refusals in ``errors``.
Imports ``answering`` and ``serving``; the web front (``assistant.web``) calls it.
"""
