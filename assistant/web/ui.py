"""The Gradio app: components and wiring only. Answers come from ChatPipeline, evidence is
formatted by presenter.py, and every admin action is an AdminService call (which checks the
session token itself, so the UI, the API and a direct HTTP call are refused alike).

API (``gradio_client.Client(url)``): ``/ask`` (message, domain) → answer JSON; ``/admin_login``
(username, password) → token; ``/admin_*`` endpoints take that token first.
"""

from __future__ import annotations


import gradio as gr

from assistant.admin.service import AdminDenied, AdminError, AdminService
from assistant.answering.pipeline import Answer, ChatPipeline
from assistant.web.presenter import (answer_header, answer_html, answer_json, chat_turns, evidence_markdown,
                                 facts_picture, for_chat, jobs_markdown)
from assistant.settings import Settings
from assistant.web.guards import TICKET_COOKIE

AUTO = "auto"
# /chat and /ask share one Gradio queue and its concurrency limit: both end in the serving engine.
MODEL_QUEUE = "model"
# An answer's [n] links to its evidence item in the panel (presenter.answer_html); the click is
# handled here so that it scrolls within the page (Gradio opens chat links in a new tab), opens a
# folded item and highlights it.
PAGE_JS = """() => {
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a.citation");
    if (!link) return;
    event.preventDefault();
    event.stopPropagation();
    const target = document.getElementById(link.getAttribute("href").slice(1));
    if (!target) return;
    const folded = target.closest("details");
    if (folded) folded.open = true;
    document.querySelectorAll(".evidence-target").forEach((item) => item.classList.remove("evidence-target"));
    const line = target.closest("li") || target;
    line.classList.add("evidence-target");
    line.scrollIntoView({block: "center"});
  }, true);
}"""
PAGE_CSS = """
.unsupported { text-decoration: underline dotted; text-underline-offset: 3px; opacity: 0.75; }
.unsupported::after { content: " (unsupported)"; font-size: 0.8em; }
a.citation { text-decoration: none; font-weight: 600; }
.evidence-target { outline: 2px solid var(--color-accent); border-radius: 4px; }
"""
EXAMPLES = ["What reverses the effect of warfarin?", "Which law created the Federal Reserve System?",
            "Which president appointed Earl Warren?", "What does metformin treat?"]


def build_app(settings: Settings, pipeline: ChatPipeline, admin: AdminService) -> gr.Blocks:
    pictures = settings.data_dir / "pictures"  # the newest facts_pictures_kept are kept (presenter.py)

    def chat(message: str, history: list, domain: str):
        history = list(history or [])
        turns = chat_turns(history, settings.history_max_turns)  # only what can reach the prompt is read
        history += [{"role": "user", "content": for_chat(message)}, {"role": "assistant", "content": ""}]
        turn = sum(1 for m in history if m["role"] == "assistant")  # this answer's evidence anchors
        yield history, "", "*Thinking…*", gr.skip(), gr.skip()
        answered = ""
        for item in pipeline.stream(message, turns, domain=None if domain in (AUTO, "", None) else domain):
            if isinstance(item, Answer):
                history[-1]["content"] = answer_html(item, turn)
                yield (history, "", answer_header(item), evidence_markdown(item, turn),
                       str(facts_picture(item, pictures, settings.facts_pictures_kept) or "") or None)
            else:
                answered += item
                history[-1]["content"] = for_chat(answered)
                yield history, "", gr.skip(), gr.skip(), gr.skip()

    def ask(message: str, domain: str = AUTO) -> dict:
        """One question, the whole answer with its evidence as JSON."""
        return answer_json(pipeline.respond(message, domain=None if domain in (AUTO, "", None) else domain))

    cache_age = settings.ui_cache_max_age_s
    with gr.Blocks(title="Graph-grounded assistant", delete_cache=(cache_age, cache_age)) as app:
        gr.Markdown("# Graph-grounded assistant\nAnswers cite numbered graph facts and passages from the "
                    "domain the router picks (or the one you choose).")
        with gr.Tab("Chat"):
            domain = gr.Dropdown([AUTO] + pipeline.router.domains(), value=AUTO, label="Domain",
                                 allow_custom_value=True)
            # Plain text (and HTML-escaped by presenter.for_chat): a question, or an answer that echoes
            # one, may hold Markdown or HTML images that would make the browser fetch from anywhere.
            chatbot = gr.Chatbot(label="Conversation", height=420, elem_id="conversation", render_markdown=False,
                                 allow_tags=False)
            header = gr.Markdown(elem_id="answer-header")
            with gr.Row():
                message = gr.Textbox(label="Question", placeholder="Ask about medicine, finance or law…",
                                     scale=5, elem_id="question")
                send = gr.Button("Ask", variant="primary", scale=1, elem_id="ask")
            with gr.Accordion("Evidence", open=True, elem_id="evidence-panel"):
                evidence = gr.Markdown(elem_id="evidence")
                picture = gr.Image(label="Facts used", type="filepath", height=360, elem_id="facts-picture")
            gr.Examples(EXAMPLES, inputs=message)
            outputs = [chatbot, message, header, evidence, picture]
            for trigger in (send.click, message.submit):
                trigger(chat, [message, chatbot, domain], outputs, api_name="chat" if trigger == send.click else False,
                        concurrency_limit=settings.ui_concurrency, concurrency_id=MODEL_QUEUE)
        with gr.Tab("Admin"):
            _admin_tab(admin)
        gr.api(ask, api_name="ask", concurrency_limit=settings.ui_concurrency, concurrency_id=MODEL_QUEUE)
        _admin_api(admin)
    return app


# The upload ticket (assistant/web/guards.py) goes into a cookie the browser sends with the
# admin tab's file uploads; an empty ticket (a failed login) removes it.
SET_UPLOAD_COOKIE = f"""(ticket) => {{
    document.cookie = "{TICKET_COOKIE}=" + (ticket || "") + "; path=/; SameSite=Strict" + (ticket ? "" : "; max-age=0");
    return [];
}}"""


def _admin_tab(admin: AdminService) -> None:
    token = gr.State("")  # the session token stays on the server, in this page's session state
    ticket = gr.Textbox(visible=False)  # only the upload ticket goes to the page (for its cookie)
    with gr.Row():
        username = gr.Textbox(label="Admin user", elem_id="admin-user")
        password = gr.Textbox(label="Password", type="password", elem_id="admin-password")
        login = gr.Button("Log in", elem_id="admin-login")
        logout = gr.Button("Log out", elem_id="admin-logout", visible=False)
    login_state = gr.Markdown("Not logged in.", elem_id="admin-state")
    with gr.Column(visible=False) as panel:
        gr.Markdown("### Domains")
        domains = gr.Dataframe(label="Domains", interactive=False, elem_id="domains-table")
        with gr.Row():
            domain = gr.Textbox(label="Domain", scale=1)
            folder = gr.Textbox(label="Server folder to index (or upload files below)", scale=3)
            dry_run = gr.Checkbox(label="Dry run (show the diff only)")
        files = gr.File(label="Corpus files", file_count="multiple", elem_id="corpus-files")
        reindex = gr.Button("Index in the background")
        gr.Markdown("### Adapters")
        adapters = gr.Dataframe(label="Adapters", interactive=False, elem_id="adapters-table")
        with gr.Row():
            adapter_name = gr.Textbox(label="Adapter name, folder, or domain (rollback / train)")
            steps = gr.Number(label="Training steps", value=60, precision=0)
        adapter_files = gr.File(label="Adapter upload (.zip, or its three files)", file_count="multiple")
        with gr.Row():
            load, upload, rollback, unload, train = (gr.Button(label) for label in
                                                     ("Hot-load", "Upload + hot-load", "Roll back", "Unload", "Train"))
        result = gr.Markdown(elem_id="admin-result")
        gr.Markdown("### Status and jobs")
        jobs_view = gr.Markdown(elem_id="admin-jobs")
        status = gr.JSON(label="Status")
    timer = gr.Timer(3.0, active=False)

    def do_login(user: str, secret: str, request: gr.Request):
        try:
            new_token = admin.login(user, secret, client_address(request))
        except AdminDenied as exc:
            return ("", "", f"**{exc}**", gr.update(visible=False), gr.update(visible=False), gr.skip(), gr.skip(),
                    gr.skip(), gr.skip(), gr.Timer(active=False))
        domain_rows, adapter_rows, state = admin.overview(new_token)
        return (new_token, admin.upload_ticket(new_token), "Logged in.", gr.update(visible=True),
                gr.update(visible=True), _table(domain_rows), _table(adapter_rows), jobs_markdown(state), state,
                gr.Timer(active=True))

    login.click(do_login, [username, password],
                [token, ticket, login_state, panel, logout, domains, adapters, jobs_view, status, timer],
                api_visibility="private").then(None, [ticket], None, js=SET_UPLOAD_COOKIE, api_visibility="private")

    def do_logout(session: str):
        try:
            said = admin.logout(session)
        except AdminDenied as exc:
            said = str(exc)
        return "", "", said, gr.update(visible=False), gr.update(visible=False), gr.Timer(active=False)

    logout.click(do_logout, token, [token, ticket, login_state, panel, logout, timer],
                 api_visibility="private").then(None, [ticket], None, js=SET_UPLOAD_COOKIE, api_visibility="private")

    def refresh(session: str):
        if not session:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        try:
            domain_rows, adapter_rows, state = admin.overview(session)
        except AdminDenied:  # the session ended (idle, lifetime): say so once and stop polling
            return ("admin login required: the session ended, log in again.", gr.update(visible=False), gr.skip(), gr.skip(), gr.skip(),
                    gr.Timer(active=False))
        return gr.skip(), gr.skip(), _table(domain_rows), _table(adapter_rows), jobs_markdown(state), state

    timer.tick(refresh, token, [login_state, panel, domains, adapters, jobs_view, status], api_visibility="private",
               show_progress="hidden")

    def guarded(action):
        def run(*args):
            try:
                return action(*args)
            except (AdminDenied, AdminError) as exc:
                return f"**Refused:** {exc}"
        return run

    def start_index(session, name, path, uploads, dry):
        if uploads:
            job = admin.upload_corpus(session, name, [f if isinstance(f, str) else f.name for f in uploads], dry)
        else:
            job = admin.reindex(session, name, path, dry)
        return f"Started job `{job.id}`; progress shows under *Status and jobs*."

    reindex.click(guarded(start_index), [token, domain, folder, files, dry_run], result, api_visibility="private")
    load.click(guarded(admin.load_adapter), [token, adapter_name], result, api_visibility="private")
    upload.click(guarded(lambda session, uploads: admin.upload_adapter(
        session, [f if isinstance(f, str) else f.name for f in uploads or []])), [token, adapter_files], result,
        api_visibility="private")
    rollback.click(guarded(admin.rollback), [token, adapter_name], result, api_visibility="private")
    unload.click(guarded(admin.unload), [token, adapter_name], result, api_visibility="private")
    train.click(guarded(lambda session, name, count: f"Started job `{admin.train(session, name, int(count or 0) or None).id}`"),
                [token, adapter_name, steps], result, api_visibility="private")


def _admin_api(admin: AdminService) -> None:
    """The admin functions for API clients; each raises a gr.Error without a valid token."""

    def login(username: str, password: str, request: gr.Request) -> str:
        return _call(admin.login, username, password, client_address(request))

    def logout(token: str) -> str:
        return _call(admin.logout, token)

    def domains(token: str) -> list:
        return _call(admin.domains, token)

    def reindex(token: str, domain: str, folder: str, dry_run: bool = False) -> str:
        return _call(admin.reindex, token, domain, folder, dry_run).id

    def adapters(token: str) -> list:
        return _call(admin.adapters, token)

    def load_adapter(token: str, name_or_folder: str) -> str:
        return _call(admin.load_adapter, token, name_or_folder)

    def rollback(token: str, domain: str) -> str:
        return _call(admin.rollback, token, domain)

    def unload(token: str, name_or_domain: str) -> str:
        return _call(admin.unload, token, name_or_domain)

    def train(token: str, domain: str, max_steps: int = 0) -> str:
        return _call(admin.train, token, domain, max_steps or None).id

    def status(token: str) -> dict:
        return _call(admin.status, token)

    def job(token: str, job_id: str) -> dict:
        found = _call(admin.job, token, job_id)
        return {"id": found.id, "status": found.status, "progress": found.progress, "message": found.message,
                "result": found.result}

    for fn in (login, logout, domains, reindex, adapters, load_adapter, rollback, unload, train, status, job):
        gr.api(fn, api_name=f"admin_{fn.__name__}")


def _call(action, *args):
    try:
        return action(*args)
    except (AdminDenied, AdminError) as exc:
        raise gr.Error(str(exc), print_exception=False) from None


def _table(rows: list[dict]):
    import pandas as pd

    return pd.DataFrame(rows) if rows else pd.DataFrame({"": ["none yet"]})


def client_address(request: gr.Request | None) -> str | None:
    """The caller's address as the server saw it (behind a reverse proxy on this machine, the
    address it forwards: uvicorn trusts X-Forwarded-For from loopback only); None if unknown."""
    client = getattr(request, "client", None) if request is not None else None
    return getattr(client, "host", None) or None


