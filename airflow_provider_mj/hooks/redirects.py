"""Redirects: the API key goes to the connection's own origin and nowhere else.

``requests`` and ``aiohttp`` drop only ``Authorization`` when a redirect changes host; any other
header, ``mj-api-secret`` included, rides along to wherever the server points (a CDN, another
port). So every request of the hook goes through the two guards here:

* :class:`CredentialSafeSession` (sync) and :func:`aiohttp_guard` (an aiohttp client
  middleware, async) drop every credential header, of both auth styles, from a hop whose origin
  (scheme, host, port) is not the one of the hop before. A dropped header never comes back on a
  later hop, so the key reaches only the origin the hook addressed, which is the connection's
  own (downloads from another origin never carry it in the first place). An ``http`` to
  ``https`` upgrade counts as another origin too: put ``https`` in the Base URL instead.
* Only ``GET`` requests follow redirects (fetch, image-seed, image downloads: up to
  :data:`MAX_REDIRECTS` hops). A ``POST`` (a submit, ``list-by-condition``) is never followed:
  ``requests`` would re-send a 301/302 as a body-less ``GET`` (reported by the server as 405 "check
  the input"), and a submit must never be sent to an address the user did not configure. The
  redirect reply itself becomes a :class:`~airflow_provider_mj.exceptions.MidjourneyConfigurationError`
  naming where the server pointed (:func:`raise_for_redirect`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import requests

from airflow_provider_mj.exceptions import MidjourneyConfigurationError
from airflow_provider_mj.hooks.connection import origin_of

if TYPE_CHECKING:
    import aiohttp

    from airflow_provider_mj.hooks.errors import RequestContext

#: Every header that carries the API key, in either auth style (compared case-insensitively).
CREDENTIAL_HEADERS = ("Authorization", "mj-api-secret")
#: Hops a GET may follow before the hook gives up (an image behind a CDN needs one or two).
MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def strip_credentials(headers: MutableMapping[str, Any]) -> None:
    """Remove every credential header from ``headers`` (any letter case)."""
    wanted = {name.lower() for name in CREDENTIAL_HEADERS}
    for key in [k for k in headers if str(k).lower() in wanted]:
        if hasattr(headers, "popall"):  # multidict (aiohttp): drop every copy
            headers.popall(key, None)
        else:
            headers.pop(key, None)


def shown_url(url: str) -> str:
    """``url`` fit for a message: scheme, host, port and path; never user info or a query (tokens)."""
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    shown = f"{parts.scheme}://{host}{port}{parts.path}" if parts.scheme else parts.path
    return shown if len(shown) <= 160 else shown[:159] + "\u2026"


class CredentialSafeSession(requests.Session):
    """A :class:`requests.Session` that never carries a credential header to another origin."""

    def __init__(self) -> None:
        super().__init__()
        self.max_redirects = MAX_REDIRECTS

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        super().rebuild_auth(prepared_request, response)
        if origin_of(prepared_request.url or "") != origin_of(response.request.url or ""):
            strip_credentials(prepared_request.headers)


def aiohttp_guard(url: str) -> Callable[..., Awaitable[Any]]:
    """An aiohttp client middleware for one request to ``url``: aiohttp runs it on every hop,
    redirects included, and it drops the credentials from any hop off ``url``'s origin."""
    origin = origin_of(url)

    async def guard(request: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
        if origin_of(str(request.url)) != origin:
            strip_credentials(request.headers)
        return await handler(request)

    return guard


def follows_redirects(method: str) -> bool:
    """Whether a request with ``method`` may follow a redirect (only GET: see the module docstring)."""
    return method.upper() == "GET"


def raise_for_redirect(status: int, location: str | None, *, url: str, ctx: RequestContext) -> None:
    """Raise the error for a redirect reply that was not followed (a POST, or a GET that ran out of
    hops): where the server pointed, and what to fix. Any other status returns."""
    if status not in REDIRECT_STATUSES:
        return
    target = shown_url(urljoin(url, location)) if location else "no Location given"
    why = (" A submit is never re-sent to another address (it could create and bill the job there)."
           if ctx.is_submit else "")
    raise MidjourneyConfigurationError(
        f"The server answered the {ctx.what} with a redirect (HTTP {status}) to {target}; it was not followed."
        f"{why} Set the Base URL of connection {ctx.conn_id!r} to the address the server redirects to "
        "(often https instead of http, or another host or path).",
        http_status=status, mj_task_id=ctx.mj_task_id, prompt=ctx.prompt if ctx.is_submit else None,
    )
