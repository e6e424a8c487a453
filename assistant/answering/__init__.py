"""Answering a question: ``router`` picks the domain, ``retrieval`` the evidence (passages, graph
facts, the graph walk), ``answer_writer`` writes the answer (its opening from graph facts,
``fact_answers``; a yes/no label from the findings, ``yes_no`` and ``findings``; table cells,
``table_answers``, ``table_cells``, ``table_wording``; a quoted sentence, ``evidence_quotes``; a
multi-hop bridge, ``bridge``), ``attribution`` checks and cites each sentence (``sentences``
splits them), ``grounded_stream`` streams attributed sentences, and ``pipeline`` ties it together
for every caller. Imports ``serving`` (to generate) and ``assistant.settings``, never
``evaluation``, ``admin``, ``web`` or ``cli``.
"""
