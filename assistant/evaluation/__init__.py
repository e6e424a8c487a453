"""``assistant eval``: routing, retrieval, answers and knowledge transfer measured on any corpus
and question set, in a workspace of its own (the served domains and adapters are never touched).

questions.py reads the question set, metrics.py holds the pure scoring functions,
workspace.py indexes the corpus (or reuses the last build), runner.py runs the measurements,
transfer.py trains the adapters for ``--train-adapters``, report.py writes report.json,
report.md and the charts.
"""
