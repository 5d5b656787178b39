"""Push a release to an external repository: the server POSTs each file to a URL the
user gave (``posturl``), with the legacy upload API twine speaks.

That URL is the user's choice, so the server must not become their way into
the network it sits in (any user may push, and anyone may create a user by
default). The rules, as for a user's mirror (mirror/policy.py):

* the destination must pass the mirror destination policy: loopback, private,
  link-local and other non-public addresses are refused unless
  ``--mirror-allow-hosts`` allows them, checked on the address connected to
  (after DNS, so a second DNS answer cannot slip past the check);
* no redirect is followed: after a POST a 302 or 303 becomes a GET, which would
  read whatever the redirect names. A redirect answer stops the push (400);
* of an answer only the status and its reason phrase (bounded) are reported,
  never its body: a service that was reachable after all must not be readable
  through the action log;
* the server's own ``~/.netrc`` credentials are never sent: only what the user
  gave (``username``/``password``, or credentials in the URL).
"""
from __future__ import annotations

import base64
import http.client
import re
from typing import Any
from urllib.parse import urlsplit

import bottle
from urllib3 import encode_multipart_formdata

from .. import __version__
from ..core import Core
from ..mirror.page import redact
from ..mirror.policy import DestinationRefused, policy_of
from ..mirror.upstream_client import REDIRECTS, UpstreamClient
from .httpkit import APIError, json_reply

MAX_REASON = 200  # characters of an answer's reason phrase in the action log (an index may explain there)
READ_TIMEOUT = 120.0  # seconds to wait for the repository's answer to one file


def check_posturl(core: Core, posturl: str) -> None:
    """400 unless an http(s) URL, 403 when its host resolves to an address the policy refuses:
    known before any file is read or downloaded. Asks DNS (outside any transaction)."""
    shown = redact(posturl)
    parts = urlsplit(posturl)
    try:
        parts.port  # noqa: B018 (a port that is no number raises here)
    except ValueError:
        raise APIError(400, f"posturl {shown!r} has no valid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise APIError(400, f"posturl {shown!r} is not an http(s) URL")
    try:
        policy_of(core).check_url(posturl)
    except DestinationRefused as e:
        raise APIError(403, f"posturl {shown} refused: {e}") from None


def push_external(core: Core, src: Any, body: dict[str, Any], flag: Any) -> bottle.HTTPResponse:
    """POST the release's files (and docs) of ``src`` (push.SourceRelease) to ``body["posturl"]``,
    which check_posturl passed; every connection is checked again on the address it goes to."""
    posturl = str(body["posturl"])
    shown = redact(posturl)
    policy = policy_of(core)
    client = UpstreamClient(f"devpi-server/{__version__}", maxsize=1, guard=policy.check, netrc=False)
    headers = {"User-Agent": f"devpi-server/{__version__}"}
    username, password = str(body.get("username") or ""), str(body.get("password") or "")
    if username or password:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    timeout = (float(core.config.request_timeout), READ_TIMEOUT)
    md = {k: v for k, v in src.release.metadata.items() if v not in (None, "", [])}
    actions: list[list[Any]] = []
    ok = True

    def post(form: list[tuple[str, Any]]) -> tuple[int, str] | None:
        """(status, "status reason") of one POST, or None after an error (logged)."""
        nonlocal ok
        payload, content_type = encode_multipart_formdata(form)
        try:
            resp = client.post(posturl, payload, {**headers, "Content-Type": content_type}, timeout=timeout)
        except DestinationRefused as e:  # resolved elsewhere now than at the check above
            raise APIError(403, f"posturl {shown} refused: {e}") from None
        except (OSError, http.client.HTTPException, ValueError) as e:
            # the error's type and, for a socket error, the system's text: never bytes it received
            detail = str(e) if isinstance(e, OSError) else type(e).__name__
            actions.append([-1, f"exception on posting to {shown}", detail[:200]])
            ok = False
            return None
        resp.close()  # the body is not read, let alone shown
        status = resp.status_code
        said = f"{status} {_reason(resp.reason)}".strip()
        if status in REDIRECTS:
            raise APIError(400, f"posturl {shown} answered {said}: a push follows no redirect, give the "
                                "repository's upload URL itself")
        return status, said

    if flag(body.get("register_project")):
        answer = post([(":action", "submit"), *_fields(md)])
        if answer is not None:
            actions.append([answer[0], "register", src.project.name, src.release.version])
    for f in src.files:
        if f.rel not in ("releasefile", "doczip"):
            continue
        if f.rel == "doczip" and flag(body.get("no_docs")):
            continue
        if f.rel == "releasefile" and flag(body.get("only_docs")):
            continue
        data = core.blobs.read_bytes(f.sha256)
        if f.rel == "releasefile":
            wheel = f.filename.endswith(".whl")
            form = [(":action", "file_upload"), ("protocol_version", "1"), ("sha256_digest", f.sha256),
                    ("filetype", "bdist_wheel" if wheel else "sdist"), ("pyversion", "py3" if wheel else "source"),
                    *_fields(md), ("content", (f.filename, data))]
            answer = post(form)
            if answer is not None:
                actions.append([answer[0], "upload", f"{src.index.fullname}/{f.relpath}",
                                "" if 200 <= answer[0] < 300 else answer[1]])
                ok = ok and answer[0] in (200, 201)
        else:
            form = [(":action", "doc_upload"), ("name", str(md.get("name", src.project.name))),
                    ("version", src.release.version), ("content", (f"{src.project.name}.zip", data))]
            answer = post(form)
            if answer is not None:
                actions.append([answer[0], "docfile", src.project.name])
                ok = ok and answer[0] in (200, 201)
    return json_reply(actions, "actionlog", status=200 if ok else 502)


def _fields(md: dict[str, Any]) -> list[tuple[str, str]]:
    """Metadata as form fields: a list is one field per item (as requests and twine send it)."""
    out: list[tuple[str, str]] = []
    for key, value in md.items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item is not None:
                out.append((str(key), item if isinstance(item, str) else str(item)))
    return out


def _reason(text: str) -> str:
    """The reason phrase, printable and short: it is the only text of the answer shown."""
    return re.sub(r"[^\x20-\x7e]", "?", text)[:MAX_REASON]
