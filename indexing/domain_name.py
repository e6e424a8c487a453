"""What a domain may be called: lower-case letters, digits, ``-`` and ``_``, at most 64
characters, so a name is always a safe folder name and graph property value."""

from __future__ import annotations

import re

DOMAIN_NAME = re.compile(r"\A[a-z0-9][a-z0-9_-]{0,63}\Z")
