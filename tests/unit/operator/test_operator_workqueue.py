"""workqueue.WorkQueue: coalescing, one pass in flight per key, newest state wins, urgent first, bounded workers."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable

from sam_operator.workqueue import WorkQueue


def wait(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


class Recorder:
    def __init__(self, hold: float = 0.0) -> None:
        self.hold = hold
        self.calls: list[Hashable] = []
        self.lock = threading.Lock()
        self.running: Counter[Hashable] = Counter()
        self.max_per_key = 0
        self.max_total = 0

    def __call__(self, key: Hashable) -> None:
        with self.lock:
            self.running[key] += 1
            self.max_per_key = max(self.max_per_key, self.running[key])
            self.max_total = max(self.max_total, sum(self.running.values()))
            self.calls.append(key)
        time.sleep(self.hold)
        with self.lock:
            self.running[key] -= 1


def test_many_adds_of_one_key_before_the_queue_opens_become_one_pass() -> None:
    rec = Recorder()
    queue = WorkQueue(rec, workers=3)
    for _ in range(50):
        queue.add(("ns", "a"))
    queue.add(("ns", "b"), urgent=False)
    time.sleep(0.05)
    assert rec.calls == []  # closed: nothing runs on a half-filled store
    queue.open()
    wait(queue.idle)
    assert sorted(rec.calls) == [("ns", "a"), ("ns", "b")]
    queue.stop()


def test_a_key_added_while_it_runs_runs_exactly_once_more_never_concurrently() -> None:
    rec = Recorder(hold=0.1)
    queue = WorkQueue(rec, workers=4)
    queue.open()
    queue.add("k")
    wait(lambda: rec.running["k"] == 1)
    for _ in range(20):  # the newest state must get its pass: one more, not twenty
        queue.add("k")
    wait(queue.idle)
    assert rec.calls == ["k", "k"]
    assert rec.max_per_key == 1
    queue.stop()


def test_delayed_adds_within_the_window_are_coalesced() -> None:
    rec = Recorder()
    queue = WorkQueue(rec, workers=2)
    queue.open()
    for _ in range(30):
        queue.add_after("pod-burst", 0.15)
    time.sleep(0.05)
    assert rec.calls == []
    wait(queue.idle)
    assert rec.calls == ["pod-burst"]
    queue.stop()


def test_an_urgent_add_overtakes_a_delayed_one_and_does_not_run_twice() -> None:
    rec = Recorder()
    queue = WorkQueue(rec, workers=1)
    queue.open()
    queue.add_after("k", 0.2)
    queue.add("k")
    wait(lambda: rec.calls == ["k"], timeout=0.15)
    time.sleep(0.3)
    assert rec.calls == ["k"]
    queue.stop()


def test_urgent_keys_are_served_before_the_background_resync_lane() -> None:
    rec = Recorder()
    queue = WorkQueue(rec, workers=1)
    for i in range(20):
        queue.add(f"resync-{i}", urgent=False)
    queue.add("edit")
    queue.add("resync-5")  # promoted: an event for a key that waits in the background lane
    queue.open()
    wait(queue.idle)
    assert rec.calls[:2] == ["edit", "resync-5"]
    assert sorted(rec.calls) == sorted(["edit", *(f"resync-{i}" for i in range(20))])
    queue.stop()


def test_concurrency_across_keys_is_bounded_by_the_worker_count() -> None:
    rec = Recorder(hold=0.05)
    queue = WorkQueue(rec, workers=2)
    queue.open()
    for i in range(8):
        queue.add(i)
    wait(queue.idle)
    assert sorted(rec.calls) == list(range(8))  # type: ignore[type-var]
    assert rec.max_total == 2
    queue.stop()


def test_a_failing_handler_does_not_kill_its_worker() -> None:
    calls: list[str] = []

    def handler(key: Hashable) -> None:
        calls.append(str(key))
        if key == "bad":
            raise RuntimeError("boom")

    queue = WorkQueue(handler, workers=1)
    queue.open()
    queue.add("bad")
    queue.add("good")
    wait(queue.idle)
    assert calls == ["bad", "good"]
    queue.stop()


def test_a_new_or_edited_sammodel_overtakes_the_coalesced_child_events_of_others() -> None:
    rec = Recorder()
    queue = WorkQueue(rec, workers=1)
    for i in range(5):
        queue.add_after(f"pods-of-{i}", 0.0)  # due already: status refreshes after pod events
    queue.add("created", urgent=True)
    time.sleep(0.05)
    queue.open()
    wait(queue.idle)
    assert rec.calls[0] == "created"
    assert sorted(rec.calls[1:]) == [f"pods-of-{i}" for i in range(5)]
    queue.stop()
