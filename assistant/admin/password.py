"""The admin password: from settings, else generated once and kept in a file only its owner can read."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from assistant.settings import Settings

ADMIN_PASSWORD_FILE = "admin_password"


def admin_password(settings: Settings) -> tuple[str, Path | None]:
    """The admin password from settings, else one generated on first use and kept in a file of
    mode 0600 in the data dir. Returns the password and that file (None when set in settings)."""
    if settings.admin_password is not None:
        return settings.admin_password.get_secret_value(), None
    path = settings.data_dir / ADMIN_PASSWORD_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(18) + "\n")
    return path.read_text().strip(), path
