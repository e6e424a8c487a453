"""ASGI middleware in front of the Gradio app: request bodies have a size limit, and Gradio's
file-upload route is for admins only.

Request bodies: a chat request carries the question and the whole history the client says it
had; nothing needs more than ``max_request_bytes`` (the history is cut to its last turns anyway,
pipeline.py), so a larger body is refused with 413 before Gradio reads it into memory. Bodies
without a Content-Length are read up to the limit and refused past it.

Uploads:

Gradio serves ``POST /gradio_api/upload`` for every app, whatever components it has, and keeps
what it receives in its cache folder: anonymous callers could fill the disk (up to 1,000 files a
request, ``max_upload_bytes`` each). Only the admin tab takes files, so this ASGI middleware
refuses that route unless the request carries a valid *upload ticket*: a random value the admin
service hands out at login, valid as long as that admin session, good for uploading and nothing
else (the admin session token itself never leaves the server). The admin tab puts the ticket in
a ``SameSite=Strict`` cookie, which the browser sends with its uploads; an API client can send
it in the ``X-Upload-Ticket`` header. The cache folder's total size is capped as well; Gradio's
``delete_cache`` (set in ui.py) removes old files.
"""

from __future__ import annotations

import os
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Callable

from starlette.responses import PlainTextResponse

UPLOAD_ROUTE = "/gradio_api/upload"
TICKET_COOKIE = "assistant_upload"
TICKET_HEADER = b"x-upload-ticket"


class RequestSizeLimit:
    def __init__(self, app, *, max_bytes: int, exempt: tuple[str, ...] = (UPLOAD_ROUTE,)):
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = exempt  # routes with limits of their own (uploads: max_upload_bytes per file)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].rstrip("/").endswith(self.exempt):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        messages, size = [], 0
        while True:  # no length given: read it here, up to the limit, then hand it on
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        await self.app(scope, _replay(messages, receive), send)

    async def _too_large(self, scope, receive, send):
        response = PlainTextResponse(f"the request is larger than {self.max_bytes} bytes", status_code=413)
        await response(scope, receive, send)


def _replay(messages: list[dict], receive):
    pending = list(messages)

    async def replayed():
        return pending.pop(0) if pending else await receive()

    return replayed


class AdminUploadGuard:
    def __init__(self, app, *, ticket_valid: Callable[[str | None], bool], folder: Callable[[], str | Path],
                 max_folder_bytes: int):
        self.app = app
        self.ticket_valid = ticket_valid
        self.folder = folder
        self.max_folder_bytes = max_folder_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].rstrip("/").endswith(UPLOAD_ROUTE):
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope) -> PlainTextResponse | None:
        if not self.ticket_valid(_ticket(scope)):
            return PlainTextResponse("uploads need an admin session: log in on the Admin tab first", status_code=403)
        if folder_bytes(Path(self.folder())) > self.max_folder_bytes:
            return PlainTextResponse("the upload area is full; try again once old uploads are cleared", status_code=507)
        return None


def _ticket(scope) -> str | None:
    headers = dict(scope.get("headers") or [])
    if TICKET_HEADER in headers:
        return headers[TICKET_HEADER].decode("latin-1")
    cookie = SimpleCookie()
    try:
        cookie.load(headers.get(b"cookie", b"").decode("latin-1"))
    except Exception:  # a malformed Cookie header carries no ticket
        return None
    morsel = cookie.get(TICKET_COOKIE)
    return morsel.value if morsel else None


def folder_bytes(folder: Path) -> int:
    """Bytes of the regular files under ``folder`` (0 when it does not exist yet)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue  # deleted meanwhile (Gradio's cache sweep)
    return total
