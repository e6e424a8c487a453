"""The two ways an admin request is refused: not logged in (:class:`AdminDenied`) or a bad request
(:class:`AdminError`). Apart from service.py so that the upload checks can raise them too."""


class AdminDenied(PermissionError):
    """The caller is not logged in as admin."""


class AdminError(ValueError):
    """An admin request was refused (bad upload, unknown domain, ...); the message says why."""
