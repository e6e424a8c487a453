"""What counts as a word when answers, questions and evidence are compared: letters (Latin with
accents) and digits, joined by an apostrophe or a hyphen ("Alzheimer's", "ACE-inhibitor")."""

from __future__ import annotations

import re

# Possessive: each part ends where the letters do, so nothing is ever given back (linear).
WORD = re.compile(r"[A-Za-z0-9\u00c0-\u024f]++(?:['\u2019-][A-Za-z0-9\u00c0-\u024f]++)*+")
