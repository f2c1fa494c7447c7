"""The ``/session`` resource of the skaha REST surface: list, get, create, renew and delete sessions.

Validation follows ``PostAction`` in the server's order (the first failure wins); every refusal
is raised as the package's ``APIError`` with the server's words and status, for
:func:`controller.simulator.routes.handle` to render. The parameters are read by
:mod:`controller.simulator.params`.

Private images: an image from a harbor host that is not in the public cache (``/image``) needs
the ``x-skaha-registry-auth`` header, as on the real service (the exact 400 texts otherwise).
With the header, images in ``SimulatorConfig.private_images`` start normally (any image does with
``accept_private_images``) and any other image is "not found": the session stays ``Pending`` with
``Failed``/``BackOff`` pull events until its deadline, as a real image-pull failure does.

Deliberate differences: ``type=desktop-app`` on ``POST /session`` is a 400 (the real server has no
template and would 500); desktop-app sub-resources are not simulated (``GET .../app`` lists none).
"""

from __future__ import annotations

import base64
import binascii
import re

from controller.errors import error_for_status
from controller.simulator import render
from controller.simulator.config import CORE_OPTIONS, FIXED_KIND_REQUESTS, KINDS, RAM_OPTIONS
from controller.simulator.params import (
    Params,
    bad_request,
    env_param,
    gpus_param,
    option_param,
    param,
    text_param,
)
from controller.simulator.state import GIB, Cluster, SessionRecord
from controller.simulator.wire import Request, Response, json_response, text
from controller.simulator.workload import FOREVER, outcome_of, session_environment, split_like_java

_NAME = re.compile(r"[A-Za-z0-9\-]+")
_LABEL_MAX = 63


def session(method: str, path_info: str, params: Params, request: Request,
            cluster: Cluster, now: float) -> Response:
    """``/session[/{id}[/app[/{appID}]]]``, split as ``SessionAction.initRequest`` splits its path.

    The servlet path info loses its leading slash and is split on ``/`` the Java way: more than
    three parts is ``Invalid request: <that relative path>``, and any second part makes it a
    desktop-app request (the server never checks that it says ``app``).
    """
    relative = path_info[1:] if path_info.startswith("/") else path_info
    rest = split_like_java(relative, "/") if relative else []
    if len(rest) > 3:
        raise bad_request(f"Invalid request: {relative}")
    if len(rest) >= 2:
        return _desktop_app(method, rest)
    session_id = rest[0] if rest and rest[0] else None
    path = request.path  # the whole path: /skaha/v1/session + path_info
    if method == "GET":
        return _get_one(session_id, params, cluster, now) if session_id else _list(params, cluster, now)
    if method == "POST":
        if session_id:
            return _modify(session_id, params, cluster, now)
        return _create(params, request, cluster, now)
    if method == "DELETE":
        if not session_id:
            raise bad_request("Cannot kill all sessions.")
        record = cluster.get(session_id)
        if record is not None and record.user == cluster.config.user:
            cluster.delete(record, now)
        return text(200, "")  # >= 1.0.0: always 200, even for unknown ids
    raise error_for_status("route", 405, f"method not allowed: {method} {path}")


# -- reading sessions -----------------------------------------------------------------------------


def _list(params: Params, cluster: Cluster, now: float) -> Response:
    view = param(params, "view")
    kind = param(params, "type")
    status = param(params, "status")
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


def _get_one(session_id: str, params: Params, cluster: Cluster, now: float) -> Response:
    view = param(params, "view")
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


def _create(params: Params, request: Request, cluster: Cluster, now: float) -> Response:
    """``PostAction.doAction`` for a new session: its checks in its order, then the launch."""
    config = cluster.config
    image = param(params, "image")
    if image is None:
        raise bad_request("Missing parameter 'image'")
    kind = (text_param(params, "type") or "headless").strip().lower()
    if not image.strip():
        raise bad_request("image is required")  # validateImage
    if not any(image.startswith(host) for host in config.harbor_hosts):
        raise bad_request(f"session image '{image}' must come from one of [{', '.join(config.harbor_hosts)}]")
    if kind not in KINDS or kind == "desktop-app":
        raise bad_request(f"Invalid session type: {param(params, 'type')}")
    cores = option_param(params, "cores", CORE_OPTIONS)
    ram = option_param(params, "ram", RAM_OPTIONS)
    name = text_param(params, "name")
    if name is None:
        raise bad_request("Missing parameter 'name'")
    if _NAME.fullmatch(name) is None:
        raise bad_request("name can only contain alpha-numeric chars and '-'")
    if kind != "headless" and cluster.active_interactive(config.user, now) >= config.max_interactive:
        raise bad_request(f"User {config.user} has reached the maximum of {config.max_interactive} active sessions.")
    gpus = gpus_param(params)
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
    user_env = env_param(params) if headless else ()
    cmd, args = (param(params, "cmd"), param(params, "args")) if headless else (None, None)
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


def _check_launch(name: str, kind: str, params: Params, session_id: str, user: str) -> None:
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
        raise bad_request("canfar.net/name label value cannot be blank")
    hostname = name.lower()
    bad_env = kind == "headless" and any(key == "" for key, _ in env_param(params))
    if len(hostname) > _LABEL_MAX or hostname.endswith("-") or bad_env:
        job = f"skaha-{kind}-{user}-{session_id}".lower()
        body = ('{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
                f'"message":"jobs.batch \\"{job}\\" not found","reason":"NotFound",'
                f'"details":{{"name":"{job}","group":"batch","kind":"jobs"}},"code":404}}')
        raise error_for_status("create", 500, (
            "unexpected exception: io.kubernetes.client.openapi.ApiException: Message: Not Found\n"
            f"HTTP response code: 404\nHTTP response body: {body}\nHTTP response headers: {{}}"))


def _modify(session_id: str, params: Params, cluster: Cluster, now: float) -> Response:
    action = param(params, "action")
    if not action:  # StringUtil.hasLength
        raise bad_request("Cannot modify an existing session")
    if action.lower() != "renew":
        raise bad_request("unrecognized action")
    record = cluster.get(session_id)
    if record is None or record.user != cluster.config.user or not record.is_active(now):  # deleted too
        raise bad_request(f"No active job for user {cluster.config.user} with session {session_id}")
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
            raise bad_request("Missing app ID")
        return text(200, "")
    if method == "POST" and app_id is None:
        raise error_for_status("app", 404, f"session {session_id} not found")
    raise bad_request("Cannot modify an existing desktop app")


# -- private images ------------------------------------------------------------------------------


def _check_registry_auth(image: str, request: Request, cluster: Cluster) -> bool:
    """Whether the image can be pulled; raises the server's 400s for a private image without auth."""
    if image in cluster.config.images:
        return True
    header = request.headers.get("x-skaha-registry-auth")
    if not header:
        raise bad_request("No authentication provided for unknown or private image.  Use x-skaha-registry-auth "
                          "request header with base64Encode(username:secret).")
    try:
        decoded = base64.b64decode(header.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        decoded = ""
    parts = decoded.split(":")
    if len(parts) != 2 or not all(parts):
        raise bad_request("Invalid input.  Must be in form of username:secret")
    return cluster.config.accept_private_images or image in cluster.config.private_images
