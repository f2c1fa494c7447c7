"""Two real daemons with one prefix against one simulated service on loopback: neither destroys the other's work.

The bug report of issue 15: controller A manages set ``alpha`` from one state directory; B, started
later from another with set ``beta``, same token, same default prefix ``cc``. Before the inventory
each pruned the other's sessions as orphans and the other recreated them, for ever.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.controller.conftest import TOKEN, DaemonProcess, Service, manifest, wait_until


def controller(service: Service, root: Path, name: str, replicas: int) -> DaemonProcess:
    state = root / "state"
    state.mkdir(parents=True)
    (state / f"{name}.yaml").write_text(manifest(name, replicas))
    return DaemonProcess(state=state, status_file=root / "status.json", log_file=root / "daemon.log",
                         args=["--server", service.url, "--interval", "0.3", "--metrics-port", "0"],
                         env={"CANFAR_TOKEN": TOKEN}).start()


def test_two_controllers_with_one_prefix_destroy_nothing_and_both_say_so(service: Service, tmp_path: Path) -> None:
    a = controller(service, tmp_path / "a", "alpha", 3)
    b: DaemonProcess | None = None
    try:
        wait_until(lambda: len(service.live("cc-alpha-")) == 3, what="alpha's three sessions")
        b = controller(service, tmp_path / "b", "beta", 2)
        wait_until(lambda: len(service.live("cc-beta-")) == 2, what="beta's two sessions")
        # Both go on passing over each other's sessions: 15 passes each is several seconds of fighting
        # before the inventory (one prune per orphan seen twice, every pass).
        a_status, b_status = a.wait_passes(15), b.wait_passes(15)
        assert service.requests("DELETE") == [], "a controller destroyed sessions it did not create"
        assert len(service.requests("POST")) == 5  # one create per slot, ever
        assert len(service.live("cc-alpha-")) == 3 and len(service.live("cc-beta-")) == 2
        assert a_status["unmanaged"] == {"beta": 2} and b_status["unmanaged"] == {"alpha": 3}
        assert a_status["conflicts"] == {} and b_status["conflicts"] == {}
        for process, other in ((a, "beta"), (b, "alpha")):
            said = [line for line in map(json.loads, process.log_file.read_text().splitlines())
                    if "never managed" in line["event"]]
            assert [line["set"] for line in said] == [other]  # said once, naming the set
    finally:
        for process in (a, b):
            if process is not None:
                assert process.stop() == 0, process.log_tail()
