"""``controller.rules``: the service's rules once, and ``SessionSpec``, checked when it is made."""

from __future__ import annotations

from typing import Any

import pytest

from controller.errors import InvalidRequestError
from controller.rules import RESERVED_ENV, SessionSpec
from controller.spec import Template

IMAGE = "images.canfar.net/skaha/astroml:latest"


def test_params_are_the_wire_parameters_in_the_canfar_order() -> None:
    """name, image, cores, ram, type, gpus, cmd, args, then env entries; whole numbers without '.0'."""
    spec = SessionSpec("job", IMAGE, "headless", 2.0, 8, 1, "python", "run.py fast", (("A", "1"), ("B", "x y")))
    assert spec.params() == [
        ("name", "job"), ("image", IMAGE), ("cores", "2"), ("ram", "8"), ("type", "headless"), ("gpus", "1"),
        ("cmd", "python"), ("args", "run.py fast"), ("env", "A=1"), ("env", "B=x y"),
    ]


def test_a_flexible_spec_sends_no_resources() -> None:
    """Omitted cores, ram and gpu are not sent at all: the service reads that as flexible mode."""
    assert SessionSpec("job", IMAGE).params() == [("name", "job"), ("image", IMAGE), ("type", "headless")]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "Upper"}, "name: must be a lowercase DNS label"),
        ({"name": "-leading"}, "name: must be a lowercase DNS label"),
        ({"name": "x" * 64}, r"name: must be at most 63 characters \(got 64\)"),
        ({"name": ""}, "name: must not be empty"),
        ({"image": ""}, "image: must be a full image reference"),
        ({"image": "python:3"}, "image: must be a full image reference"),
        ({"image": None}, r"image: must be text \(got NoneType\)"),
        ({"kind": "desktop-app"}, "kind: must be one of headless, notebook, desktop, carta, firefly, contributed"),
        ({"cores": 0}, r"cores: must be between 1 and 256 \(got 0\)"),
        ({"cores": True}, r"cores: must be a number \(got True\)"),
        ({"cores": "2"}, r"cores: must be a number \(got '2'\)"),
        ({"ram": 513}, r"ram: must be between 1 and 512 \(got 513\)"),
        ({"gpu": 0}, r"gpu: must be between 1 and 28 \(got 0\)"),
        ({"gpu": 1.5}, r"gpu: must be a whole number \(got 1.5\)"),
        ({"cmd": "sleep 10"}, "cmd: must be a single executable without spaces or quotes"),
        ({"cmd": ""}, "cmd: must be a single executable"),
        ({"args": "a  b"}, "args: must be words separated by single spaces"),
        ({"args": " a"}, "args: must be words separated by single spaces"),
        ({"args": "say 'hi'"}, "args: must not contain quotes"),
        ({"env": (("A", "x=y"),)}, "env: value of 'A' contains '='"),
        ({"env": (("A", "$HOME"),)}, "env: value of 'A' must not contain quotes"),
        ({"env": (("1A", "x"),)}, "env: key '1A' is not a valid environment variable name"),
        ({"env": {"A": "x"}}, "env: must be a tuple of"),
        ({"env": (("A", 1),)}, "env: must be a tuple of"),
        ({"kind": "notebook", "cmd": "jupyter"}, "cmd: 'cmd' is only honoured for headless sessions"),
        ({"kind": "carta", "env": (("A", "1"),)}, "env: 'env' is only honoured for headless sessions"),
    ],
)
def test_every_rule_is_checked_when_a_spec_is_made(fields: dict[str, Any], message: str) -> None:
    """A spec the service would refuse, mangle or ignore cannot be made; the error names the field."""
    with pytest.raises(InvalidRequestError, match=f"^invalid session spec: {message}"):
        SessionSpec(**{"name": "job", "image": IMAGE, **fields})


def test_a_spec_may_carry_its_own_replica_identity() -> None:
    """REPLICA_ID and REPLICA_COUNT are reserved for manifests, not for a spec (the controller sets them)."""
    spec = SessionSpec("job", IMAGE, env=(("REPLICA_ID", "4"), ("REPLICA_COUNT", "5")))
    assert spec.env_keys == RESERVED_ENV


def test_a_template_gives_the_spec_of_a_slot() -> None:
    """session_spec adds the slot's env to the template's, the slot's entries winning, in one typed spec."""
    template = Template.model_validate({"image": IMAGE, "cores": 2, "ram": 8.0, "cmd": "python",
                                        "args": "w.py", "env": {"QUEUE": "q", "THREADS": 4.0}})
    spec = template.session_spec("cc-w-abcdef-3", {"REPLICA_ID": "3", "REPLICA_COUNT": "5", "QUEUE": "r"})
    assert spec == SessionSpec("cc-w-abcdef-3", IMAGE, "headless", 2, 8.0, None, "python", "w.py",
                               (("QUEUE", "r"), ("THREADS", "4"), ("REPLICA_ID", "3"), ("REPLICA_COUNT", "5")))


def test_an_interactive_template_gives_a_spec_without_env() -> None:
    """A notebook template has no env, and its slot gets none."""
    template = Template.model_validate({"kind": "notebook", "image": IMAGE})
    assert template.session_spec("cc-nb-abcdef-1").params() == [
        ("name", "cc-nb-abcdef-1"), ("image", IMAGE), ("type", "notebook")]


def test_template_hashes_do_not_move() -> None:
    """The rules moved out of the Template, but its hash (in every owned name) is what it was."""
    template = Template.model_validate({"image": IMAGE, "cores": 2, "ram": 8, "gpu": 1, "cmd": "python",
                                        "args": "worker.py --queue q", "env": {"QUEUE": "q", "THREADS": 4}})
    assert template.hash() == "3ed37f"
    assert Template.model_validate({"kind": "notebook", "image": IMAGE}).hash() == "11bbd5"
