"""The skaha REST surface: parse, validate with the server's exact messages, act, render.

``handle(request, cluster=..., now=...)`` answers one request against the cluster at simulated
time ``now``. Validation follows ``PostAction`` in the server's order (the first failure wins)
and every refusal is ``text/plain`` with the server's words and status, raised as the package's
``APIError`` and rendered in one place. Anything unforeseen becomes a 500 like the server's
``unexpected exception``, never a dropped connection.

Private images: an image from a harbor host that is not in the public cache (``/image``) needs
the ``x-skaha-registry-auth`` header, as on the real service (the exact 400 texts otherwise).
With the header, images in ``SimulatorConfig.private_images`` start normally (any image does with
``accept_private_images``) and any other image is "not found": the session stays ``Pending`` with
``Failed``/``BackOff`` pull events until its deadline, as a real image-pull failure does.

Parameters are read as cadc-rest's ``SyncInput`` does: names case-insensitively, the first value
wins, and ``cores``/``ram``/``gpus``/``type`` that are blank count as not given
(``StringUtil.hasText`` in ``PostAction``).

Deliberate differences: ``type=desktop-app`` on ``POST /session`` is a 400 (the real server has no
template and would 500); desktop-app sub-resources are not simulated (``GET .../app`` lists none).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable

from controller.errors import APIError, error_for_status
from controller.simulator import render
from controller.simulator.config import CORE_OPTIONS, FIXED_KIND_REQUESTS, GPU_OPTIONS, KINDS, RAM_OPTIONS
from controller.simulator.state import GIB, Cluster, SessionRecord
from controller.simulator.wire import Request, Response, json_response, text
from controller.simulator.workload import FOREVER, outcome_of, session_environment, split_like_java

BASE = "/skaha/v1"
_NAME = re.compile(r"[A-Za-z0-9\-]+")
_LABEL_MAX = 63


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
    params: dict[str, list[str]] = {}
    for key, values in request.params().items():  # SyncInput keeps names case-insensitively
        params.setdefault(key.lower(), []).extend(values)
    if resource == "session" and relative_path(path).startswith("/session"):
        path_info = relative_path(path)[len("/session"):]
        return _session(method, path_info, params, request, cluster, now)
    rest = parts[1:]
    if resource in _LISTS and not rest:
        if method != "GET":
            raise error_for_status("route", 405, f"method not allowed: {method} {path}")
        return _LISTS[resource](params, cluster)
    raise error_for_status("route", 404, f"not found: {path}")


def _session(method: str, path_info: str, params: dict[str, list[str]], request: Request,
             cluster: Cluster, now: float) -> Response:
    """``/session[/{id}[/app[/{appID}]]]``, split as ``SessionAction.initRequest`` splits its path.

    The servlet path info loses its leading slash and is split on ``/`` the Java way: more than
    three parts is ``Invalid request: <that relative path>``, and any second part makes it a
    desktop-app request (the server never checks that it says ``app``).
    """
    relative = path_info[1:] if path_info.startswith("/") else path_info
    rest = split_like_java(relative, "/") if relative else []
    if len(rest) > 3:
        raise _bad(f"Invalid request: {relative}")
    if len(rest) >= 2:
        return _desktop_app(method, rest)
    session_id = rest[0] if rest and rest[0] else None
    path = BASE + "/session" + path_info
    if method == "GET":
        return _get_one(session_id, params, cluster, now) if session_id else _list(params, cluster, now)
    if method == "POST":
        if session_id:
            return _modify(session_id, params, cluster, now)
        return _create(params, request, cluster, now)
    if method == "DELETE":
        if not session_id:
            raise _bad("Cannot kill all sessions.")
        record = cluster.get(session_id)
        if record is not None and record.user == cluster.config.user:
            cluster.delete(record, now)
        return text(200, "")  # >= 1.0.0: always 200, even for unknown ids
    raise error_for_status("route", 405, f"method not allowed: {method} {path}")


# -- reading sessions -----------------------------------------------------------------------------


def _list(params: dict[str, list[str]], cluster: Cluster, now: float) -> Response:
    view = _param(params, "view")
    kind = _param(params, "type")
    status = _param(params, "status")
    # ``stats`` and ``all`` are compared case-sensitively (``GetAction``): ``view=Stats`` lists sessions.
    if view == "stats":
        return json_response(render.stats_json(cluster))
    config, user = cluster.config, cluster.config.user
    kind = kind.lower() if kind else None
    status = status.lower() if status else None
    if view == "all":
        rows = [render.public_session_json(record, now) for record in cluster if record.listed]
        return json_response([row for row in rows
                              if (kind is None or row["type"] == kind)
                              and (status is None or row["status"].lower() == status)])
    if view is not None and view.lower() == "interactive":  # the one view GetAction compares ignoring case
        kind = None
        records = (record for record in cluster
                   if record.listed and record.user == user and record.kind != "headless")
    else:
        records = (record for record in cluster if record.listed and record.user == user
                   and (record.kind != "desktop-app" or kind == "desktop-app"))
    if kind is not None:
        records = (record for record in records if record.kind == kind)
    rows = [render.session_json(record, now, config) for record in records]
    if status is not None:
        rows = [row for row in rows if row["status"].lower() == status]
    return json_response(rows)


def _get_one(session_id: str, params: dict[str, list[str]], cluster: Cluster, now: float) -> Response:
    view = _param(params, "view")
    record = cluster.get(session_id)
    if record is not None and (record.user != cluster.config.user or record.kind == "desktop-app"):
        record = None
    # Logs and events go by the pod, which outlives a DELETE for a few seconds; the JSON goes by the Job.
    if view == "logs":
        # kubectl logs by label: an unknown session simply has no output.
        return text(200, render.logs_text(record, now) if record else "")
    if view == "events":
        if record is None:
            raise error_for_status("events", 404, f"session {session_id} not found.")
        table = render.events_table(render.events_of(record, now), now=now, ttl=cluster.config.event_ttl)
        return text(200, table)
    if record is None or not record.listed:
        raise error_for_status("get", 404, f"session {session_id} not found")
    return json_response(render.session_json(record, now, cluster.config))


# -- changing sessions ----------------------------------------------------------------------------


def _create(params: dict[str, list[str]], request: Request, cluster: Cluster, now: float) -> Response:
    """``PostAction.doAction`` for a new session: its checks in its order, then the launch."""
    config = cluster.config
    image = _param(params, "image")
    if image is None:
        raise _bad("Missing parameter 'image'")
    kind = (_text_param(params, "type") or "headless").strip().lower()
    if not image.strip():
        raise _bad("image is required")  # validateImage
    if not any(image.startswith(host) for host in config.harbor_hosts):
        raise _bad(f"session image '{image}' must come from one of [{', '.join(config.harbor_hosts)}]")
    if kind not in KINDS or kind == "desktop-app":
        raise _bad(f"Invalid session type: {_param(params, 'type')}")
    cores = _option(params, "cores", CORE_OPTIONS)
    ram = _option(params, "ram", RAM_OPTIONS)
    name = _text_param(params, "name")
    if name is None:
        raise _bad("Missing parameter 'name'")
    if _NAME.fullmatch(name) is None:
        raise _bad("name can only contain alpha-numeric chars and '-'")
    if kind != "headless" and cluster.active_interactive(config.user, now) >= config.max_interactive:
        raise _bad(f"User {config.user} has reached the maximum of {config.max_interactive} active sessions.")
    gpus = _gpus(params)
    pulls = _check_registry_auth(image, request, cluster)
    session_id = cluster.new_id()
    _check_launch(name, kind, params, session_id, config.user)
    if kind in FIXED_KIND_REQUESTS:
        cores_request, ram_request, fixed = *FIXED_KIND_REQUESTS[kind], False
    else:
        cores_request = cores if cores is not None else render.DEFAULT_REQUEST_CORES
        ram_request = ram if ram is not None else render.DEFAULT_REQUEST_RAM_GB
        fixed = ram is not None  # flavor "fixed" iff memory request == limit
    headless = kind == "headless"
    user_env = _env(params) if headless else ()
    cmd, args = (_param(params, "cmd"), _param(params, "args")) if headless else (None, None)
    environment = session_environment(user_env, session_id=session_id, name=name.lower(), user=config.user,
                                      cores=float(cores_request), skaha_host=config.sessions_host)
    record = SessionRecord(
        id=session_id,
        user=config.user,
        name=name.lower(),
        kind=kind,
        image=image,
        cores=float(cores_request),
        ram_bytes=float(ram_request) * GIB,
        fixed=fixed,
        gpus=gpus,
        outcome=outcome_of(cmd, args, environment) if headless else FOREVER,
        pulls=pulls,
        deadline=config.headless_deadline if headless else config.session_expiry,
        created=now,
        env=user_env,
        cmd=cmd,
        args=args,
    )
    cluster.add(record, now)
    return text(200, f"{record.id}\n")


def _check_launch(name: str, kind: str, params: dict[str, list[str]], session_id: str, user: str) -> None:
    """What goes wrong after validation, when the server builds and creates the Job.

    - The ``canfar.net/name`` label is the name cut to 63 characters and trimmed from the end
      until it is a valid label value (``SessionLabels.truncateLabelValue``); a name starting
      with ``-`` trims to nothing: 400 ``canfar.net/name label value cannot be blank``.
    - The pod's ``hostname`` is the whole lower-cased name (``launch-*.yaml``), which Kubernetes
      wants to be an RFC 1123 label: 63 characters at most, no ``-`` at either end. An env entry
      with an empty name (``=x``) is just as invalid. ``kubectl create`` then fails, the server
      ignores its stderr and fails reading the Job back (``SessionDAO.getJob``): a 500
      ``unexpected exception`` carrying the Kubernetes client's 404 (inferred, skaha-api.md §2.7).
    """
    if name.startswith("-"):
        raise _bad("canfar.net/name label value cannot be blank")
    hostname = name.lower()
    bad_env = kind == "headless" and any(key == "" for key, _ in _env(params))
    if len(hostname) > _LABEL_MAX or hostname.endswith("-") or bad_env:
        job = f"skaha-{kind}-{user}-{session_id}".lower()
        body = ('{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
                f'"message":"jobs.batch \\"{job}\\" not found","reason":"NotFound",'
                f'"details":{{"name":"{job}","group":"batch","kind":"jobs"}},"code":404}}')
        raise error_for_status("create", 500, (
            "unexpected exception: io.kubernetes.client.openapi.ApiException: Message: Not Found\n"
            f"HTTP response code: 404\nHTTP response body: {body}\nHTTP response headers: {{}}"))


def _modify(session_id: str, params: dict[str, list[str]], cluster: Cluster, now: float) -> Response:
    action = _param(params, "action")
    if not action:  # StringUtil.hasLength
        raise _bad("Cannot modify an existing session")
    if action.lower() != "renew":
        raise _bad("unrecognized action")
    record = cluster.get(session_id)
    if record is None or record.user != cluster.config.user or not record.is_active(now):  # deleted too
        raise _bad(f"No active job for user {cluster.config.user} with session {session_id}")
    cluster.extend(record, now)
    return text(200, "")


def _desktop_app(method: str, rest: list[str]) -> Response:
    """Desktop apps are not simulated: the list is empty and nothing can be found or launched."""
    session_id, app_id = rest[0], rest[2] if len(rest) == 3 else None
    if method == "GET" and app_id is None:
        return json_response([])
    if method == "GET":
        raise error_for_status("app", 404,
                               f"desktop app with session {session_id} and app ID {app_id} was not found")
    if method == "DELETE":
        if app_id is None:
            raise _bad("Missing app ID")
        return text(200, "")
    if method == "POST" and app_id is None:
        raise error_for_status("app", 404, f"session {session_id} not found")
    raise _bad("Cannot modify an existing desktop app")


# -- the other resources --------------------------------------------------------------------------


def _images(params: dict[str, list[str]], cluster: Cluster) -> Response:
    kind = _param(params, "type")
    if kind is not None and kind not in KINDS:
        raise _bad(f"unknown type: {kind}")
    return json_response(render.images_json(cluster.config, kind))


def _context(params: dict[str, list[str]], cluster: Cluster) -> Response:
    return json_response(render.context_json(cluster.config))


def _repository(params: dict[str, list[str]], cluster: Cluster) -> Response:
    return json_response(list(cluster.config.harbor_hosts))


_LISTS: dict[str, Callable[[dict[str, list[str]], Cluster], Response]] = {
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


def _check_registry_auth(image: str, request: Request, cluster: Cluster) -> bool:
    """Whether the image can be pulled; raises the server's 400s for a private image without auth."""
    if image in cluster.config.images:
        return True
    header = request.headers.get("x-skaha-registry-auth")
    if not header:
        raise _bad("No authentication provided for unknown or private image.  Use x-skaha-registry-auth "
                   "request header with base64Encode(username:secret).")
    try:
        decoded = base64.b64decode(header.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        decoded = ""
    parts = decoded.split(":")
    if len(parts) != 2 or not all(parts):
        raise _bad("Invalid input.  Must be in form of username:secret")
    return cluster.config.accept_private_images or image in cluster.config.private_images


def _param(params: dict[str, list[str]], name: str) -> str | None:
    """The first value, as ``getParameter`` returns it."""
    values = params.get(name)
    return values[0] if values else None


def _text_param(params: dict[str, list[str]], name: str) -> str | None:
    """The first value when it has text; blank counts as not given (``StringUtil.hasText``)."""
    value = _param(params, name)
    return value if value is not None and value.strip() else None


#: What Java's ``Double.valueOf`` parses (after trimming): decimal, ``NaN``, ``Infinity``, a d/f suffix.
_JAVA_DOUBLE = re.compile(r"[+-]?(NaN|Infinity|(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?[fFdD]?)")


def _option(params: dict[str, list[str]], name: str, options: tuple[int, ...]) -> float | None:
    """A cores/ram value: parsed as a double, valid when its int part is one of the options; blank is none."""
    raw = _text_param(params, name)
    if raw is None:
        return None
    match = _JAVA_DOUBLE.fullmatch(raw.strip())
    value = math.nan
    if match is not None and match.group(2) is not None:
        value = float(match.group(0).rstrip("fFdD"))
    if not math.isfinite(value) or int(value) not in options:
        raise _bad(f"Invalid value for '{name}': {raw}")
    return value


def _gpus(params: dict[str, list[str]]) -> int:
    """``Integer.parseInt`` (no spaces, optional sign) and one of the options; blank is none."""
    raw = _text_param(params, "gpus")
    if raw is None:
        return 0
    value = int(raw) if re.fullmatch(r"[+-]?\d+", raw) else 0
    if value not in GPU_OPTIONS:
        raise _bad(f"Invalid value for 'gpus': {raw}")
    return value


def _env(params: dict[str, list[str]]) -> tuple[tuple[str, str], ...]:
    """Repeatable ``KEY=VALUE`` split on ``=`` the Java way; entries not giving exactly two parts are dropped.

    ``String.split`` drops trailing empty strings, so ``A=`` gives ``["A"]`` and is dropped like
    ``A=b=c`` (``PostAction.getHeadlessImageBundle``).
    """
    pairs = (split_like_java(entry, "=") for entry in params.get("env", []))
    return tuple((pair[0], pair[1]) for pair in pairs if len(pair) == 2)


def _bad(message: str) -> APIError:
    return error_for_status("request", 400, message)


def _error(error: APIError) -> Response:
    status = error.status or 500
    headers = (("Retry-After", "1"),) if status == 503 else ()
    return text(status, error.server_message, headers=headers)
