"""The skaha REST surface: authenticate, dispatch, and render every refusal in one place.

``handle(request, cluster=..., now=...)`` answers one request against the cluster at simulated
time ``now``. Every refusal is ``text/plain`` with the server's words and status, raised as the
package's ``APIError`` and rendered here. Anything unforeseen becomes a 500 like the server's
``unexpected exception``, never a dropped connection.

The ``/session`` resource, with the server's validation, is :mod:`controller.simulator.sessionroutes`;
this module answers the others (``/image``, ``/context``, ``/repository`` and the VOSI endpoints).
"""

from __future__ import annotations

from collections.abc import Callable

from controller.errors import APIError, error_for_status
from controller.simulator import render
from controller.simulator.config import KINDS
from controller.simulator.params import Params, bad_request, param
from controller.simulator.sessionroutes import session
from controller.simulator.state import Cluster
from controller.simulator.wire import Request, Response, json_response, text

BASE = "/skaha/v1"


def handle(request: Request, *, cluster: Cluster, now: float) -> Response:
    """Answer one request; ``cluster`` must already be advanced to ``now``."""
    try:
        return _route(request, cluster, now)
    except APIError as error:
        return _error(error)
    except Exception as error:  # the server's catch-all: a 500 that says what broke
        return text(500, f"unexpected exception: {type(error).__name__}: {error}")


def relative_path(path: str) -> str:
    """The path below ``/skaha/v1`` (``/session/abc``), or the path unchanged when outside it."""
    if path == BASE or path.startswith(BASE + "/"):
        return path[len(BASE):] or "/"
    return path


# -- dispatch -------------------------------------------------------------------------------------


def _route(request: Request, cluster: Cluster, now: float) -> Response:
    path = request.path
    if path == "/skaha/availability":
        return _availability()
    if path == "/skaha/capabilities":
        return _capabilities(request.headers.get("host", "localhost"))
    if not (path == BASE or path.startswith(BASE + "/")):
        raise error_for_status("route", 404, f"not found: {path}")
    _authenticate(request, cluster)
    parts = [part for part in relative_path(path).split("/") if part]
    if not parts:
        raise error_for_status("route", 404, f"not found: {path}")
    resource = parts[0]
    method = request.method
    params: Params = {}
    for key, values in request.params().items():  # SyncInput keeps names case-insensitively
        params.setdefault(key.lower(), []).extend(values)
    if resource == "session" and relative_path(path).startswith("/session"):
        path_info = relative_path(path)[len("/session"):]
        return session(method, path_info, params, request, cluster, now)
    rest = parts[1:]
    if resource in _LISTS and not rest:
        if method != "GET":
            raise error_for_status("route", 405, f"method not allowed: {method} {path}")
        return _LISTS[resource](params, cluster)
    raise error_for_status("route", 404, f"not found: {path}")


# -- the other resources --------------------------------------------------------------------------


def _images(params: Params, cluster: Cluster) -> Response:
    kind = param(params, "type")
    if kind is not None and kind not in KINDS:
        raise bad_request(f"unknown type: {kind}")
    return json_response(render.images_json(cluster.config, kind))


def _context(params: Params, cluster: Cluster) -> Response:
    return json_response(render.context_json(cluster.config))


def _repository(params: Params, cluster: Cluster) -> Response:
    return json_response(list(cluster.config.harbor_hosts))


_LISTS: dict[str, Callable[[Params, Cluster], Response]] = {
    "image": _images, "context": _context, "repository": _repository,
}


def _availability() -> Response:
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<vosi:availability xmlns:vosi="http://www.ivoa.net/xml/VOSIAvailability/v1.0">\n'
            "  <vosi:available>true</vosi:available>\n"
            "  <vosi:note>Skaha Service Available (simulator)</vosi:note>\n"
            "</vosi:availability>\n")
    return Response(200, body.encode(), "text/xml; charset=utf-8")


def _capabilities(host: str) -> Response:
    """VOSI capabilities, so discovery-style clients find the ``/skaha/v1`` endpoints of this server."""
    standards = {"session": "session", "context": "context", "image": "image", "repository": "repository"}
    methods = "".join(f'<securityMethod standardID="ivo://ivoa.net/sso#{method}"/>'
                      for method in ("cookie", "tls-with-certificate", "token"))
    capabilities = "".join(
        f'<capability standardID="http://www.opencadc.org/std/platform#{standard}-1">'
        f'<interface xsi:type="vs:ParamHTTP" role="std"><accessURL use="base">'
        f"http://{host}{BASE}/{path}</accessURL>{methods}</interface></capability>"
        for standard, path in standards.items())
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1">'
            f"{capabilities}</vosi:capabilities>\n")
    return Response(200, body.encode(), "text/xml; charset=utf-8")


# -- helpers --------------------------------------------------------------------------------------


def _authenticate(request: Request, cluster: Cluster) -> None:
    """Bearer token only: none is 401, and with a configured token any other is 401 too."""
    scheme, _, credential = request.headers.get("authorization", "").strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise error_for_status("auth", 401, "Unauthorized")
    expected, provider = cluster.config.token, cluster.config.identity_provider
    if provider is not None and credential != expected and not provider(credential):
        raise error_for_status("auth", 401, "Unauthorized: invalid or expired bearer token")
    if provider is None and expected is not None and credential != expected:
        raise error_for_status("auth", 401, "Unauthorized: invalid bearer token")


def _error(error: APIError) -> Response:
    status = error.status or 500
    headers = (("Retry-After", "1"),) if status == 503 else ()
    return text(status, error.server_message, headers=headers)
