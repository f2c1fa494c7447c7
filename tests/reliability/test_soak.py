"""A seeded, randomized soak: hundreds of passes under every fault at once, invariants after each step.

Each step may inject faults (5xx answers whose create still happens later, lost answers, slow
creates, empty, partial and garbled lists, lists leaving out the same sessions several times in a
row, lists repeating rows, torn manifest writes (some stalled for 2-10 s mid-file, long enough to
settle, as a scale-up read as a scale-down), a vanishing
token file, 429s, a set whose creates are always refused, a memory disk that fills up so appends
become short writes for a few steps, deletes answered 200 and ignored, deletes that fail while a
set is scaled down, sessions stuck Terminating or Unknown for a while, a hanging stats call:
``lingering_soak``), change the world the way users
do (scale up and down, change a template, delete a session by hand), kill the controller while a
create is on the wire (also between sending it and recording it) and start it again from its
ledger. Then one pass runs and the invariants are checked against the simulator's ground truth,
not against what lists said:

1. no slot has two live sessions of one template, nor more than two in all (a rollout's surge); no
   slot has two Running sessions but a rollout's surge (``lingering_soak``);
2. no healthy session of the current template is destroyed (a destroy the service ignored is
   retried even once its slot is wanted again: the slot waits for it to go);
3. no session of another owner is touched;
4. a set whose creates are refused backs off (never two attempts within 4.5 s in one process),
   and it does retry: the check must have compared attempts, or it proved nothing; nor does it
   wait longer than the back-off's cap (``LONGEST_BACKOFF``), whatever the wall clock did;
5. the controller stays live during the faults: a share of the passes succeed (failed destroys backing
   off aside);
6. no create reaches the service before its intent record was completely written and fsynced;
7. once faults stop, every set converges within a few passes;
8. a session a list left out is looked up by id at most once a pass, and by the same process again
   only once its re-check is due, 1 min later (the rule *Disappearance confirmed*);
9. nothing outside the inventory is destroyed: a second writer's sessions of a managed set never
   (``writer_soak``), and every destroyed session is in the controller's inventory;
10. no session gets more than ``DELETES_PER_HOUR`` DELETE calls in an hour (``lingering_soak``);
11. a stalled half-written manifest never destroys a Running session of its set (rule *Destructive
    settle*), and the soak saw the torn content in force at least once, or it proved nothing.

The platform ends notebooks after a minute while ``--session-expiry`` says 4 days, and now and then
ignores a renew (``renew_soak``): no session is renewed twice within a quarter of that minute by one
controller process, so renews per session per hour stay bounded.

The soak also checks itself: every kind of fault fired (a fault on the wire counts once a request
took it, see ``FaultMirror``; a kind the dice skipped is forced now and then), and a kill counts
only when it landed mid-pass. The simulator keeps a short request log
here, so the checks read it through sequence cursors that survive its trimming.

The controller's wall clock also steps 2 h away and back (``CLOCK_STEP``), while its monotonic
time and the service's clock go on: every invariant holds across the steps.

A failure names its seed: ``SOAK_SEEDS=1234 pytest tests/reliability/test_soak.py`` replays it
exactly (``SOAK_PASSES`` changes the length; ``SOAK_SEEDS=random:20`` tries 20 fresh seeds).
"""

from __future__ import annotations

import os
import random
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from controller.creates import CREATE_BACKOFF
from controller.plan.vanished import RECHECK
from controller.simulator import RecordedRequest
from controller.statedir import SETTLE_WINDOW, parse_text
from tests.faultfs import FullDisk
from tests.reliability.lingering_soak import FAILED, STATS_TIMEOUT, Lingering, only_failed_destroys
from tests.reliability.renew_soak import LIFE, ShortLifetime
from tests.reliability.renew_soak import OPTIONS as RENEW_OPTIONS
from tests.reliability.rig import LIVE, FaultMirror, RequestCursor, Rig, manifest, owned
from tests.reliability.writer_soak import SecondWriter

#: Sets that should always converge, and one whose creates the service always refuses.
SETS = {"alpha": 6, "beta": 3, "gamma": 4}
REFUSED = "delta"
DEFAULT_SEEDS = (11, 23, 37, 41)
PASSES = int(os.environ.get("SOAK_PASSES", "550"))
#: How many steps a written count may take to come into force (a file acts once stable for 1 s; steps
#: advance the clock 0.2-4 s).
RECENT_STEPS = 6
#: A kind of fault the dice have not fired yet is forced every this many steps (25 kinds to force in 550).
FORCE_EVERY = 15
KILL_TRIES = 3
#: Kills mid-pass are what the soak is most about: they are forced until this many have landed.
KILLS_WANTED = 3
PREPARE = "scale up before a kill"
#: Faults that only a create takes: forcing one scales a set up, or it may wait behind the others.
CREATE_FAULTS = frozenset({"5xx, create applied later", "answer lost after the create", "slow creates",
                           "create refused outright (5xx, not applied)", "429 with Retry-After"})
#: The controller kills and restarts, besides the injected faults.
KILL, RESTART = "kill -9 mid-pass", "restart"
#: The share of passes during the faults that must succeed (the list read and every action done).
LIVENESS = 0.5
#: A write stalled mid-file for longer than the settle window.
STALLED = "torn write, long stall"
#: The simulator's request log is kept short, so the soak runs across its trimming.
REQUEST_LOG = 400
#: The controller's wall clock steps 2 h away (NTP, a resumed VM) on this share of the steps, and back
#: after a few steps.
CLOCK_STEP, STEP_SECONDS, CLOCK_AWAY, CLOCK_SHARE = "wall-clock step (±2 h)", 7200.0, 3, 0.02
#: The longest a refused set may wait between two attempts in one process: the back-off's cap, its
#: jitter at the top, and a minute for the passes that cannot create (full disk, no token, a pause).
LONGEST_BACKOFF = CREATE_BACKOFF.cap * (1 + CREATE_BACKOFF.jitter) + 60.0


def seeds() -> list[int]:
    spec = os.environ.get("SOAK_SEEDS", "")
    if spec.startswith("random:"):
        return [random.randrange(1, 10**9) for _ in range(int(spec.split(":", 1)[1]))]
    if spec:
        return [int(seed) for seed in spec.split(",")]
    return list(DEFAULT_SEEDS)


def _slot_of(name: str) -> tuple[str, int] | None:
    """The (set, slot) of an owned-name session, whatever its template."""
    parts = owned(name)
    return (parts[0], parts[2]) if parts is not None else None


@dataclass
class World:
    """What the test wrote: the spec in force for each set, and the sessions of other owners."""

    replicas: dict[str, int] = field(default_factory=lambda: dict(SETS))
    revision: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SETS, 1))
    current: dict[str, str] = field(default_factory=dict)  # template hash by "set/revision"
    foreign: set[str] = field(default_factory=set)
    #: The counts written in the last few steps: a count just written may not be in force yet (a file
    #: acts once stable), so a surplus destroy under the count it replaces is no fault.
    recent: deque[dict[str, int]] = field(default_factory=lambda: deque(maxlen=RECENT_STEPS))

    def floor(self, name: str) -> int:
        """The lowest count of ``name`` written in the recent steps (or now): slots above it may be surplus."""
        return min([self.replicas[name], *(counts[name] for counts in self.recent)])


@dataclass
class Tally:
    #: Faults that fired, by kind (a kill only when it landed mid-pass).
    faults: Counter[str] = field(default_factory=Counter)
    #: Kills that came after the pass had ended (no request on the wire): a restart, not a kill mid-pass.
    late_kills: int = 0
    checks: int = 0
    passes: int = 0
    #: Passes that ran to the end with the list read and every action done.
    succeeded: int = 0
    #: Pairs of refused-set attempts in one process that the back-off check compared.
    refused_pairs: int = 0
    #: ``GET /session/{id}`` lookups of sessions a list left out, by session.
    lookups: Counter[str] = field(default_factory=Counter)
    #: Passes that planned with a stalled torn write in force (its set at the torn count).
    stalled_read: int = 0


class Soak:
    def __init__(self, root: Path, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.disk = FullDisk()
        self.disk_full_steps = 0
        self.rig = Rig(root, seed=seed, service={"max_recorded_requests": REQUEST_LOG,
                                                 "session_expiry": LIFE},  # shorter than --session-expiry
                       file_ops=self.disk, stats_timeout=STATS_TIMEOUT,
                       options=RENEW_OPTIONS)  # renews due at every pass: the bound is what limits them
        self.world = World()
        self.tally = Tally()
        self.requests = RequestCursor(self.rig.simulator)
        self.refused_attempts: list[tuple[float, int]] = []  # (time, process generation)
        self.torn: tuple[str, str] | None = None
        #: A write stalled mid-file: the set, its whole text, the torn count, and when the writer goes on.
        self.stalled: tuple[str, str, int, float] | None = None
        #: After a stalled scale-up, the set goes back to its count (a burst over): the set, count, when.
        self.restore: tuple[str, int, float] | None = None
        self.token_ok = True
        self.generation = 0  # which controller process made the requests of the current step
        #: Each looked-up session's last lookup: (time, process generation).
        self.last_lookup: dict[str, tuple[float, int]] = {}
        self.clock_back = 0  # the step at which the controller's wall clock returns (``_clock_returns``)
        self.clock_returned = -1
        #: Clock steps have dice of their own: the other faults keep the sequence they have without them.
        self.clock_dice = random.Random(seed * 7919 + 1)
        #: Each fault kind, by the share of steps the dice give it (in order; the rest inject nothing).
        self.kinds: list[tuple[float, str, Callable[[random.Random], bool]]] = [
            (0.05, "5xx, create applied later", self._late_5xx),
            (0.04, "answer lost after the create", self._lost_answer),
            (0.03, "create refused outright (5xx, not applied)", self._refused_5xx),
            (0.03, "slow creates", self._slow_creates),
            (0.04, "empty list", self._empty_list),
            (0.06, "partial list", self._partial_list),
            (0.03, "consistent partial list", self._consistent_list),
            (0.02, "garbled list", self._garbled_list),
            (0.02, "list 5xx", self._list_5xx),
            (0.02, "429 with Retry-After", self._too_many),
            (0.02, "token file vanished", self._token_vanished),
            (0.03, "torn manifest write", self._torn_write),
            (0.02, "deleted by hand", self._delete_by_hand),
            (0.01, "scale up", self._scale_up),
            (0.01, "template change", self._template_change),
            (0.05, "repeated rows", self._repeated_rows),
            (0.02, "short writes (memory disk full)", self._disk_full),
            (0.01, "scale down", self._scale_down),
            (0.02, STALLED, self._stalled_write),
        ]
        for name in SETS:
            self._write(name)
        self.rig.write(REFUSED, manifest(REFUSED, 2))
        self.rig.simulator.inject_fault("POST", "/session", status=400, name=f"cc-{REFUSED}-*", count=None)
        self.faults = FaultMirror(self.tally.faults, refused=f"cc-{REFUSED}-")
        self.lingering = Lingering(self.rig, self.tally.faults, self.faults)
        self.kinds += self.lingering.kinds()
        self.short_lifetime = ShortLifetime(self.rig, self.tally.faults)
        self.kinds += self.short_lifetime.kinds()
        self.writer = SecondWriter(self.rig, list(SETS), lambda name: _hash(name, self.world))
        self.kinds += self.writer.kinds()
        self.kinds.append((0.005, FAILED, self._failing_deletes))  # last: the other kinds keep their dice
        for name in ("analysis", "cc", f"ccx-{'alpha'}-abcdef-1", "my-alpha-1"):
            self.world.foreign.add(self.rig.add_foreign(name))

    @property
    def kind_names(self) -> list[str]:
        return [KILL, RESTART] + [kind for _, kind, _ in self.kinds]

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
        if self.stalled is not None and rig.clock() >= self.stalled[3]:  # the stalled writer goes on
            rig.write(self.stalled[0], self.stalled[1])
            self.stalled = None
        elif self.restore is not None and rig.clock() >= self.restore[2]:
            name, self.world.replicas[name], _ = self.restore
            self._write(name)
            self.restore = None
        forced = self._forced()
        if forced == KILL:  # the manifest written the step before has settled: the pass creates
            advance = max(advance, SETTLE_WINDOW + 0.5)
        rig.clock.advance(advance)
        if self.disk_full_steps:  # the disk frees up by itself after a few steps
            self.disk_full_steps -= 1
            if not self.disk_full_steps:
                self.disk.space = None
        self.lingering.release(self.tally.passes)
        self.writer.release(self.tally.passes)
        offset = self.rig.wall.offset
        self._clock_returns()
        if self.clock_dice.random() < CLOCK_SHARE and self._clock_step():
            self.tally.faults[CLOCK_STEP] += 1
        # A process that dies before any pass saw a step cannot tell it from downtime (docs/safety-clock.md,
        # Limits): no kill, restart or full disk in the step the clock moves, so a pass records the step first.
        clock_moved = self.rig.wall.offset != offset
        if clock_moved:
            self.clock_returned = self.tally.passes
        self._inject(rng, forced)
        self.world.recent.append(dict(self.world.replicas))
        truth_before = {sid: (name, status) for sid, name, status in rig.truth()}
        if (rng.random() < 0.03 or forced == KILL) and not clock_moved:
            rig.simulator.inject_delay("POST", "/session", seconds=0.001, count=3, apply=rng.choice(["before", "after"]))
            self.faults.expect("slow creates", "POST", 3)
            self.generation = rig.restarts  # the dying process makes this pass's requests
            killed = True
            if rig.crash_mid_pass(in_flight=1):
                self.tally.faults[KILL] += 1
            else:
                self.tally.late_kills += 1
        else:
            killed = False
            if (rng.random() < 0.01 or forced == RESTART) and not clock_moved:
                self.tally.faults[RESTART] += 1
                rig.restart()
            self.generation = rig.restarts
            outcome = rig.run_pass()
            self.tally.succeeded += outcome.result == "success" or only_failed_destroys(outcome)
            if self.stalled is not None and (status := outcome.plan.statuses.get(self.stalled[0])) is not None:
                self.tally.stalled_read += status.desired == self.stalled[2]
        self.tally.passes += 1
        if not self.token_ok:
            rig.token_file.write_text("rig-token")
            self.token_ok = True
        self.check(truth_before, killed=killed)

    def _forced(self) -> str | None:
        """Near the end of every ``FORCE_EVERY`` steps, the first kind of fault that has not fired yet.

        A kill lands only while a create is on the wire, so it gets ``KILL_TRIES`` tries, each after a
        step that scales a set up (``PREPARE``) in the same process, once the new manifest has settled;
        kills are forced until ``KILLS_WANTED`` have landed.
        """
        phase = self.tally.passes % FORCE_EVERY
        wanted = {KILL: KILLS_WANTED}
        missing = next((kind for kind in self.kind_names if self.tally.faults[kind] < wanted.get(kind, 1)), None)
        if missing != KILL:
            return missing if phase == FORCE_EVERY - 1 else None
        if phase < FORCE_EVERY - 3 * KILL_TRIES:
            return None
        return {0: KILL, 2: PREPARE}.get((FORCE_EVERY - 1 - phase) % 3)

    def _inject(self, rng: random.Random, forced: str | None) -> None:
        roll = rng.random()
        for share, kind, inject in self.kinds:
            if forced == kind or (forced is None and roll < share):
                if inject(rng):
                    self.tally.faults[kind] += 1
                if forced == kind and kind in CREATE_FAULTS:  # a create fault fires only if creates come
                    self._scale_up(rng, by=2)
                return
            roll -= share
        if forced == PREPARE:  # several creates: injected create faults may take the first ones
            self._scale_up(rng, by=3)

    # -- the faults (each says whether it fired) ----------------------------------------------------

    def _late_5xx(self, rng: random.Random) -> bool:
        count = rng.randint(1, 3)
        self.rig.simulator.inject_fault("POST", "/session", status=rng.choice([502, 503, 504]),
                                        apply_after=rng.uniform(0.5, 60.0), count=count)
        return self.faults.expect("5xx, create applied later", "POST", count)

    def _lost_answer(self, rng: random.Random) -> bool:
        count = rng.randint(1, 2)
        self.rig.simulator.inject_fault("POST", "/session", status=None, processed=True, count=count)
        return self.faults.expect("answer lost after the create", "POST", count)

    def _refused_5xx(self, rng: random.Random) -> bool:
        self.rig.simulator.inject_fault("POST", "/session", status=rng.choice([500, 503]), count=1)
        return self.faults.expect("create refused outright (5xx, not applied)", "POST", 1)

    def _slow_creates(self, rng: random.Random) -> bool:
        count = rng.randint(1, 4)
        self.rig.simulator.inject_delay("POST", "/session", seconds=0.001, count=count,
                                        apply=rng.choice(["before", "after"]))
        return self.faults.expect("slow creates", "POST", count)

    def _empty_list(self, rng: random.Random) -> bool:
        self.rig.simulator.inject_list_fault("empty")
        return self.faults.expect("empty list", "GET", 1, list_only=True)

    def _partial_list(self, rng: random.Random) -> bool:
        self.rig.simulator.inject_list_fault("partial", keep=rng.uniform(0.3, 0.8))
        return self.faults.expect("partial list", "GET", 1, list_only=True)

    def _consistent_list(self, rng: random.Random) -> bool:
        """The same sessions left out of several lists in a row (``GET /session/{id}`` still has them)."""
        count = rng.randint(2, 5)
        self.rig.simulator.inject_list_fault("consistent", count=count, keep=rng.uniform(0.3, 0.8),
                                             seed=rng.getrandbits(32))
        return self.faults.expect("consistent partial list", "GET", count, list_only=True)

    def _garbled_list(self, rng: random.Random) -> bool:
        self.rig.simulator.inject_list_fault(rng.choice(["garbage", "truncated"]))
        return self.faults.expect("garbled list", "GET", 1, list_only=True)

    def _list_5xx(self, rng: random.Random) -> bool:
        self.rig.simulator.inject_fault("GET", "/session", status=503, count=2)
        return self.faults.expect("list 5xx", "GET", 2)

    def _too_many(self, rng: random.Random) -> bool:
        self.rig.simulator.inject_fault("POST", "/session", status=429, retry_after=rng.uniform(1, 20))
        return self.faults.expect("429 with Retry-After", "POST", 1)

    def _token_vanished(self, rng: random.Random) -> bool:
        self.rig.token_file.unlink()
        self.token_ok = False
        return True

    def _sets(self) -> list[str]:
        """The sets a writer may change now (not one whose write is stalled mid-file, or is to be restored)."""
        busy = {self.stalled[0] if self.stalled else None, self.restore[0] if self.restore else None}
        return [name for name in SETS if name not in busy]

    def _torn_write(self, rng: random.Random) -> bool:
        name = rng.choice(self._sets())
        whole = manifest(name, self.world.replicas[name], revision=self.world.revision[name])
        marker = f"replicas: {self.world.replicas[name]}"
        cut = whole.index(marker) + len("replicas: ") + rng.randint(0, len(str(self.world.replicas[name])) - 1)
        self.rig.write(name, whole[:cut])
        self.torn = (name, whole)
        return True

    def _stalled_write(self, rng: random.Random) -> bool:
        """A scale-up to 10-14 written in place, ``replicas`` last, stalled after its first digit for 2-10 s:
        longer than the settle window, so the controller reads ``replicas: 1`` (a scale-down) for a while.
        Once the burst is over (30-60 s) the set is scaled back to its count: a real scale-down."""
        if self.stalled is not None or self.restore is not None:
            return False
        name = rng.choice(self._sets())
        self.restore = (name, self.world.replicas[name], self.rig.clock() + rng.uniform(30.0, 60.0))
        self.world.replicas[name] = rng.randint(10, 14)
        text = manifest(name, self.world.replicas[name], revision=self.world.revision[name])
        line = f"  replicas: {self.world.replicas[name]}\n"
        whole = text.replace(line, "") + line
        self.rig.write(name, whole[: whole.index(line) + len("  replicas: 1")])
        self.stalled = (name, whole, 1, self.rig.clock() + rng.uniform(2.0, 10.0))
        return True

    def _delete_by_hand(self, rng: random.Random) -> bool:
        live = [(sid, name) for sid, name, status in self.rig.truth() if status in LIVE and owned(name)]
        if live:
            self.rig.delete_outside(rng.choice(live)[0])
        return bool(live)

    def _scale_up(self, rng: random.Random, *, by: int = 1) -> bool:
        name = rng.choice(self._sets())
        self.world.replicas[name] += by
        self._write(name)
        return True

    def _scale_down(self, rng: random.Random) -> bool:
        # Never far below the start: with a handful of sessions two partial lists often leave out exactly
        # the same ones, which the rule *List trust* takes for a real deletion (a known limit).
        name = rng.choice(self._sets())
        self.world.replicas[name] = max(SETS[name] - 1, self.world.replicas[name] - rng.randint(1, 3))
        self._write(name)
        return True

    def _failing_deletes(self, rng: random.Random) -> bool:
        """Scale a set down by one while its top slot's DELETEs fail 16-40 times (issue 15: every one, once per
        pass); fired once a DELETE takes it (``Lingering.record``)."""
        above = [name for name in SETS if self.world.replicas[name] > SETS[name] - 1]
        if not above:
            return False
        name = rng.choice(above)
        slot = self.world.replicas[name]
        self.rig.simulator.fail_deletes(count=rng.randint(16, 40), name=f"cc-{name}-*-{slot}",
                                        status=rng.choice([500, 502, 503]))
        self.world.replicas[name] -= 1
        self._write(name)
        return False

    def _template_change(self, rng: random.Random) -> bool:
        name = rng.choice(self._sets())
        self.world.revision[name] += 1
        self._write(name)
        return True

    def _repeated_rows(self, rng: random.Random) -> bool:
        count = rng.randint(1, 3)
        self.rig.simulator.inject_list_fault("repeated", keep=rng.uniform(0.05, 1.0), count=count)
        return self.faults.expect("repeated rows", "GET", count, list_only=True)

    def _clock_step(self) -> bool:
        # Forward, then back; on dice of their own (``clock_dice``). The clock returns by
        # itself after CLOCK_AWAY steps (``_clock_returns``): a skew from the service's clock that lasts (the
        # process restarted meanwhile) is another matter than a step.
        if self.rig.wall.offset or self.disk_full_steps:  # a step is saved by the next pass (see _clock_returns)
            return False
        self.rig.wall.step((-1) ** self.tally.faults[CLOCK_STEP] * STEP_SECONDS)
        self.clock_back = self.tally.passes + CLOCK_AWAY
        return True

    def _clock_returns(self) -> None:
        # Not on a full disk: the ledger could not say the clock stepped, and a kill before it can would read
        # the old process's times as they are (the limit in docs/safety-clock.md).
        if self.rig.wall.offset and self.tally.passes >= self.clock_back and not self.disk_full_steps:
            self.rig.wall.step(-self.rig.wall.offset)
            self.clock_returned = self.tally.passes  # the disk does not fill up before this pass saves the step

    def _disk_full(self, rng: random.Random) -> bool:
        if self.disk_full_steps or self.clock_returned == self.tally.passes:
            return False
        self.disk.space = rng.randint(0, 400)
        self.disk_full_steps = rng.randint(1, 6)
        return True

    # -- invariants -------------------------------------------------------------------------------

    def check(self, truth_before: dict[str, tuple[str, str]], *, killed: bool = False) -> None:
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

        fresh = self.requests.fresh()
        self.faults.credit(fresh)
        self.lingering.record(fresh)
        self.tally.checks += 1
        self.lingering.check(self.fail)
        self.short_lifetime.check(fresh, self.generation, self.fail)
        deletes = [r for r in fresh if r.method == "DELETE"]
        self.tally.checks += 1
        self.writer.check(deletes, self.fail, killed=killed)
        for request in deletes:
            self.tally.checks += 1
            sid = request.path.rsplit("/", 1)[-1]
            if sid in self.world.foreign:
                self.fail(f"foreign session {sid} was destroyed")
            if self.lingering.retried(request):
                continue
            name, status = truth_before.get(sid, ("", "gone"))
            parts = owned(name)
            if parts is None or status not in LIVE:
                continue
            set_name, template, slot = parts
            if set_name in SETS and template == current[set_name] and slot <= self.world.floor(set_name):
                twins = sum(1 for other, (n, st) in truth_before.items()
                            if other != sid and n == name and st in LIVE)
                if twins == 0:
                    self.fail(f"healthy session {sid} ({name}, {status}) of the current template was destroyed")
            if self.stalled is not None and set_name == self.stalled[0] and status == "Running" and not any(
                    other != sid and st in LIVE and _slot_of(n) == (set_name, slot)
                    for other, (n, st) in truth_before.items()):  # a slot's duplicate goes whatever its template
                self.fail(f"a stalled half-written manifest destroyed Running session {sid} ({name})")

        self._check_lookups(fresh)
        self.tally.checks += 1
        sent = {r.param("name") for r in fresh if r.method == "POST" and r.path == "/session"}  # creates, not renews
        if not sent <= self.disk.durable_intents():
            self.fail(f"creates sent without a complete, fsynced record: {sorted(sent - self.disk.durable_intents())}")

        attempts = sorted(r.at for r in fresh
                          if r.method == "POST" and (r.param("name") or "").startswith(f"cc-{REFUSED}-"))
        self.tally.checks += 1
        previous = self.refused_attempts[-1] if self.refused_attempts else None
        for at in attempts:
            if previous is not None and previous[1] == self.generation:
                self.tally.refused_pairs += 1
                if at - previous[0] < 4.5 - 1e-6:
                    self.fail(f"refused set retried after {at - previous[0]:.2f} s, without backing off")
            previous = (at, self.generation)
            self.refused_attempts.append(previous)
        if previous is not None and previous[1] == self.generation and rig.clock() - previous[0] > LONGEST_BACKOFF:
            self.fail(f"refused set not retried for {rig.clock() - previous[0]:.0f} s: a back-off held too long")

    def _check_lookups(self, fresh: list[RecordedRequest]) -> None:
        """A vanished session is looked up once, not once per pass: one process asks about one session
        again only once its re-check is due (1 min after the last time), however often lists drop it."""
        self.tally.checks += 1
        asked = Counter(r.path.rsplit("/", 1)[-1] for r in fresh
                        if r.method == "GET" and r.path.startswith("/session/") and r.param("view") is None)
        at = {r.path.rsplit("/", 1)[-1]: r.at for r in fresh if r.method == "GET" and r.path.startswith("/session/")}
        for sid, count in asked.items():
            self.tally.lookups[sid] += count
            if count > 1:
                self.fail(f"session {sid} was looked up {count} times in one pass")
            last = self.last_lookup.get(sid)
            if last is not None and last[1] == self.generation and at[sid] - last[0] < RECHECK.base - 1e-6:
                self.fail(f"session {sid} was looked up again {at[sid] - last[0]:.1f} s later by the same process")
            self.last_lookup[sid] = (at[sid], self.generation)

    # -- the end --------------------------------------------------------------------------------------

    def converge(self) -> int:
        """Stop every fault, then count the passes until each set has exactly one live session per slot."""
        rig = self.rig
        rig.simulator.clear_faults()
        self.disk.space = None
        self.lingering.stop()
        self.writer.stop()
        if self.torn is not None:
            rig.write(*self.torn)
            self.torn = None
        if self.stalled is not None:
            rig.write(self.stalled[0], self.stalled[1])
            self.stalled = None
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
    tally = soak.tally
    with capsys.disabled():
        faults = ", ".join(f"{what} {count}" for what, count in sorted(tally.faults.items()))
        print(f"\nsoak seed {seed}: {tally.passes} passes ({tally.succeeded} succeeded), "
              f"{sum(tally.faults.values())} faults ({faults}; {tally.late_kills} kills after the pass ended), "
              f"{tally.checks} invariant checks ({tally.refused_pairs} refused retries compared), "
              f"{sum(tally.lookups.values())} lookups of {len(tally.lookups)} vanished sessions "
              f"(at most {max(tally.lookups.values(), default=0)} of one), "
              f"{tally.checks} invariant checks ({tally.refused_pairs} refused retries compared, "
              f"{tally.stalled_read} passes with a stalled torn write in force), "
              f"converged {passes} passes after the faults stopped; at most "
              f"{soak.short_lifetime.per_hour():.0f} renews per notebook per hour ({LIFE:.0f} s platform lifetime)")
    assert soak.rig.simulator.requests[0].seq > 1, "the request log was never trimmed: shorten REQUEST_LOG"
    never = [kind for kind in [*soak.kind_names, CLOCK_STEP] if not tally.faults[kind]]
    assert not never, f"seed {seed}: these faults never fired, so the soak did not test them: {never}"
    assert tally.refused_pairs >= 1, f"seed {seed}: the refused set never retried within one process"
    assert soak.short_lifetime.renews, f"seed {seed}: no notebook was renewed, so the renew bound was not tested"
    assert tally.lookups, f"seed {seed}: no session a list left out was ever looked up: the lookup check proved nothing"
    assert tally.stalled_read >= 1, f"seed {seed}: no pass planned with a stalled torn write in force"
    assert tally.succeeded >= LIVENESS * tally.passes, (
        f"seed {seed}: only {tally.succeeded} of {tally.passes} passes succeeded during the faults")
