"""A seeded, randomized soak: thousands of passes under every fault at once, invariants after each step.

Each step may inject faults (5xx answers whose create still happens later, lost answers, slow
creates, empty, partial and garbled lists, torn manifest writes, a vanishing token file, 429s, a
set whose creates are always refused), change the world the way users do (scale up, change a
template, delete a session by hand), kill the controller at a random instant (also between
sending a create and recording it) and start it again from its ledger. Then one pass runs and
the invariants are checked against the simulator's ground truth, not against what lists said:

1. no slot has two live sessions of one template, nor more than two in all (a rollout's surge);
2. no healthy session of the current template is destroyed;
3. no session of another owner is touched;
4. a set whose creates are refused backs off (never two attempts within 4.5 s in one process);
5. once faults stop, every set converges within a few passes.

The run prints how many faults it injected and how many checks it made. A failure names its seed:
``SOAK_SEEDS=1234 pytest tests/reliability/test_soak.py`` replays it exactly (``SOAK_PASSES``
changes the length; ``SOAK_SEEDS=random:20`` tries 20 fresh seeds).
"""

from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from controller.statedir import parse_text
from tests.reliability.rig import LIVE, Rig, manifest, owned

#: Sets that should always converge, and one whose creates the service always refuses.
SETS = {"alpha": 6, "beta": 3, "gamma": 4}
REFUSED = "delta"
DEFAULT_SEEDS = (11, 23, 37, 41)
PASSES = int(os.environ.get("SOAK_PASSES", "550"))


def seeds() -> list[int]:
    spec = os.environ.get("SOAK_SEEDS", "")
    if spec.startswith("random:"):
        return [random.randrange(1, 10**9) for _ in range(int(spec.split(":", 1)[1]))]
    if spec:
        return [int(seed) for seed in spec.split(",")]
    return list(DEFAULT_SEEDS)


@dataclass
class World:
    """What the test wrote: the spec in force for each set, and the sessions of other owners."""

    replicas: dict[str, int] = field(default_factory=lambda: dict(SETS))
    revision: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SETS, 1))
    current: dict[str, str] = field(default_factory=dict)  # template hash by "set/revision"
    foreign: set[str] = field(default_factory=set)


@dataclass
class Tally:
    faults: Counter[str] = field(default_factory=Counter)
    checks: int = 0
    passes: int = 0


class Soak:
    def __init__(self, root: Path, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.rig = Rig(root, seed=seed)
        self.world = World()
        self.tally = Tally()
        self.last_delete_seq = 0
        self.refused_attempts: list[tuple[float, int]] = []  # (time, process generation)
        self.torn: tuple[str, str] | None = None
        for name in SETS:
            self._write(name)
        self.rig.write(REFUSED, manifest(REFUSED, 2))
        self.rig.simulator.inject_fault("POST", "/session", status=400, name=f"cc-{REFUSED}-*", count=None)
        for name in ("analysis", "cc", f"ccx-{'alpha'}-abcdef-1", "my-alpha-1"):
            self.world.foreign.add(self.rig.add_foreign(name))

    def _write(self, name: str) -> None:
        text = manifest(name, self.world.replicas[name], revision=self.world.revision[name])
        self.rig.write(name, text)

    def fail(self, message: str) -> None:
        pytest.fail(f"seed {self.seed}, pass {self.tally.passes}: {message}\n"
                    f"replay: SOAK_SEEDS={self.seed} pytest tests/reliability/test_soak.py", pytrace=False)

    # -- one step ---------------------------------------------------------------------------------

    def step(self) -> None:
        rng, rig = self.rng, self.rig
        if self.torn is not None:  # the writer finishes before the torn content can settle
            name, text = self.torn
            rig.write(name, text)
            self.torn = None
            advance = 0.3
        else:
            advance = rng.uniform(0.2, 4.0)
        rig.clock.advance(advance)
        self._inject(rng)
        truth_before = {sid: (name, status) for sid, name, status in rig.truth()}
        if rng.random() < 0.03:
            self.tally.faults["kill -9 mid-pass"] += 1
            rig.simulator.inject_delay("POST", "/session", seconds=0.001, count=3, apply=rng.choice(["before", "after"]))
            self.generation = rig.restarts  # the dying process makes this pass's requests
            rig.crash_mid_pass(in_flight=1)
        else:
            if rng.random() < 0.01:
                self.tally.faults["restart"] += 1
                rig.restart()
            self.generation = rig.restarts
            rig.run_pass()
        self.tally.passes += 1
        if not self.token_ok:
            rig.token_file.write_text("rig-token")
            self.token_ok = True
        self.check(truth_before)

    token_ok = True
    generation = 0  # which controller process made the requests of the current step

    def _inject(self, rng: random.Random) -> None:
        rig, sim = self.rig, self.rig.simulator
        roll = rng.random()
        if roll < 0.05:
            self.tally.faults["5xx, create applied later"] += 1
            sim.inject_fault("POST", "/session", status=rng.choice([502, 503, 504]),
                             apply_after=rng.uniform(0.5, 60.0), count=rng.randint(1, 3))
        elif roll < 0.09:
            self.tally.faults["answer lost after the create"] += 1
            sim.inject_fault("POST", "/session", status=None, processed=True, count=rng.randint(1, 2))
        elif roll < 0.12:
            self.tally.faults["create refused outright (5xx, not applied)"] += 1
            sim.inject_fault("POST", "/session", status=rng.choice([500, 503]), count=1)
        elif roll < 0.15:
            self.tally.faults["slow creates"] += 1
            sim.inject_delay("POST", "/session", seconds=0.001, count=rng.randint(1, 4),
                             apply=rng.choice(["before", "after"]))
        elif roll < 0.19:
            self.tally.faults["empty list"] += 1
            sim.inject_list_fault("empty")
        elif roll < 0.25:
            self.tally.faults["partial list"] += 1
            sim.inject_list_fault("partial", keep=rng.uniform(0.3, 0.8))
        elif roll < 0.27:
            self.tally.faults["garbled list"] += 1
            sim.inject_list_fault(rng.choice(["garbage", "truncated"]))
        elif roll < 0.29:
            self.tally.faults["list 5xx"] += 1
            sim.inject_fault("GET", "/session", status=503, count=2)
        elif roll < 0.31:
            self.tally.faults["429 with Retry-After"] += 1
            sim.inject_fault("POST", "/session", status=429, retry_after=rng.uniform(1, 20))
        elif roll < 0.33:
            self.tally.faults["token file vanished"] += 1
            rig.token_file.unlink()
            self.token_ok = False
        elif roll < 0.36:
            self.tally.faults["torn manifest write"] += 1
            name = rng.choice(list(SETS))
            whole = manifest(name, self.world.replicas[name], revision=self.world.revision[name])
            marker = f"replicas: {self.world.replicas[name]}"
            cut = whole.index(marker) + len("replicas: ") + rng.randint(0, len(str(self.world.replicas[name])) - 1)
            rig.write(name, whole[:cut])
            self.torn = (name, whole)
        elif roll < 0.38:
            self.tally.faults["deleted by hand"] += 1
            live = [(sid, name) for sid, name, status in rig.truth() if status in LIVE and owned(name)]
            if live:
                rig.delete_outside(rng.choice(live)[0])
        elif roll < 0.39:
            self.tally.faults["scale up"] += 1
            name = rng.choice(list(SETS))
            self.world.replicas[name] += 1
            self._write(name)
        elif roll < 0.40:
            self.tally.faults["template change"] += 1
            name = rng.choice(list(SETS))
            self.world.revision[name] += 1
            self._write(name)

    # -- invariants -------------------------------------------------------------------------------

    def check(self, truth_before: dict[str, tuple[str, str]]) -> None:
        rig = self.rig
        current = {name: _hash(name, self.world) for name in SETS}
        per_slot: Counter[tuple[str, int]] = Counter()
        per_slot_current: Counter[tuple[str, int]] = Counter()
        for _, name, status in rig.truth():
            parts = owned(name)
            if parts is None or status not in LIVE:
                continue
            set_name, template, slot = parts
            per_slot[(set_name, slot)] += 1
            if template == current.get(set_name):
                per_slot_current[(set_name, slot)] += 1
        self.tally.checks += 1
        for key, count in per_slot_current.items():
            if count > 1:
                self.fail(f"slot {key} has {count} live sessions of the current template")
        for key, count in per_slot.items():
            if count > 2:
                self.fail(f"slot {key} has {count} live sessions (more than a rollout's surge)")

        deletes = [r for r in rig.simulator.requests if r.method == "DELETE" and r.seq > self.last_delete_seq]
        if deletes:
            self.last_delete_seq = max(r.seq for r in deletes)
        for request in deletes:
            self.tally.checks += 1
            sid = request.path.rsplit("/", 1)[-1]
            if sid in self.world.foreign:
                self.fail(f"foreign session {sid} was destroyed")
            name, status = truth_before.get(sid, ("", "gone"))
            parts = owned(name)
            if parts is None or status not in LIVE:
                continue
            set_name, template, slot = parts
            if set_name in SETS and template == current[set_name] and slot <= self.world.replicas[set_name]:
                twins = sum(1 for other, (n, st) in truth_before.items()
                            if other != sid and n == name and st in LIVE)
                if twins == 0:
                    self.fail(f"healthy session {sid} ({name}, {status}) of the current template was destroyed")

        attempts = [r for r in rig.simulator.requests
                    if r.method == "POST" and (r.param("name") or "").startswith(f"cc-{REFUSED}-")]
        self.tally.checks += 1
        times = sorted({(r.at, r.seq) for r in attempts})
        if len(times) > len(self.refused_attempts):
            for at, _ in times[len(self.refused_attempts):]:
                self.refused_attempts.append((at, self.generation))
        for (a, gen_a), (b, gen_b) in zip(self.refused_attempts, self.refused_attempts[1:], strict=False):
            if gen_a == gen_b and b - a < 4.5 - 1e-6:
                self.fail(f"refused set retried after {b - a:.2f} s, without backing off")

    # -- the end --------------------------------------------------------------------------------------

    def converge(self) -> int:
        """Stop every fault, then count the passes until each set has exactly one live session per slot."""
        rig = self.rig
        rig.simulator.clear_faults()
        if self.torn is not None:
            rig.write(*self.torn)
            self.torn = None
        rig.token_file.write_text("rig-token")
        rig.reconciler.reset_backoffs()  # as SIGHUP would; the refused set stays refused anyway
        for passes in range(1, 13):
            rig.clock.advance(30)
            rig.run_pass()
            truth = rig.truth()
            done = True
            for name in SETS:
                want = {(_hash(name, self.world), slot) for slot in range(1, self.world.replicas[name] + 1)}
                have = Counter((parts[1], parts[2]) for _, n, st in truth
                               if st in LIVE and (parts := owned(n)) is not None and parts[0] == name)
                if set(have) != want or any(count != 1 for count in have.values()):
                    done = False
            if done:
                return passes
        self.fail("did not converge within 12 passes (6 minutes) after the faults stopped")
        return -1


def _hash(name: str, world: World) -> str:
    """The template hash of the spec the test last wrote for ``name``."""
    key = f"{name}/{world.revision[name]}"
    if key not in world.current:
        parsed = parse_text(f"{name}.yaml", manifest(name, 1, revision=world.revision[name]), prefix="cc")
        world.current[key] = parsed.sets[0].spec.template.hash()
    return world.current[key]


@pytest.mark.parametrize("seed", seeds())
def test_soak(tmp_path: Path, seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    """Every guarantee holds under random faults, kills and restarts; afterwards it converges."""
    soak = Soak(tmp_path, seed)
    try:
        for _ in range(PASSES):
            soak.step()
        passes = soak.converge()
    finally:
        soak.rig.close()
    with capsys.disabled():
        faults = ", ".join(f"{what} {count}" for what, count in sorted(soak.tally.faults.items()))
        print(f"\nsoak seed {seed}: {soak.tally.passes} passes, {sum(soak.tally.faults.values())} faults "
              f"({faults}), {soak.tally.checks} invariant checks, converged {passes} passes after the faults stopped")
