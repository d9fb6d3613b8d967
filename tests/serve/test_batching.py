"""DynamicBatcher: batches up to max_batch, waits at most the timeout, refuses when full."""

import threading
import time

import pytest

from maskrcnn.serve.batching import DynamicBatcher, QueueFull


class GatedModel:
    """Doubles numbers; each call blocks until `gate` is set, and records its batch."""

    def __init__(self):
        self.gate, self.entered, self.calls = threading.Event(), threading.Event(), []

    def __call__(self, items):
        self.calls.append(list(items))
        self.entered.set()
        assert self.gate.wait(10)
        return [2 * x for x in items]


def test_jobs_waiting_while_the_model_runs_form_the_next_batches():
    model = GatedModel()
    batcher = DynamicBatcher(model, max_batch=3, timeout_ms=0, max_queue=10)
    batcher.start()
    first = batcher.submit(0)
    assert model.entered.wait(5)  # the worker is busy with [0]
    rest = [batcher.submit(i) for i in range(1, 6)]
    model.gate.set()
    assert [f.result(5) for f in [first, *rest]] == [0, 2, 4, 6, 8, 10]
    assert model.calls == [[0], [1, 2, 3], [4, 5]]
    batcher.stop(5)


def test_first_job_waits_up_to_the_timeout_for_company():
    model = GatedModel()
    model.gate.set()
    batcher = DynamicBatcher(model, max_batch=4, timeout_ms=300, max_queue=10)
    batcher.start()
    start = time.monotonic()
    futures = [batcher.submit(1)]
    time.sleep(0.05)
    futures.append(batcher.submit(2))
    assert [f.result(5) for f in futures] == [2, 4]
    assert model.calls == [[1, 2]]
    assert time.monotonic() - start >= 0.3
    batcher.stop(5)


def test_full_queue_refuses_with_a_retry_estimate():
    model = GatedModel()
    batcher = DynamicBatcher(model, max_batch=2, timeout_ms=0, max_queue=2)
    batcher.start()
    running = batcher.submit(0)
    assert model.entered.wait(5)
    waiting = [batcher.submit(1), batcher.submit(2)]
    with pytest.raises(QueueFull) as refused:
        batcher.submit(3)
    assert refused.value.retry_after >= 1
    model.gate.set()
    assert [f.result(5) for f in [running, *waiting]] == [0, 2, 4]
    assert batcher.submit(4).result(5) == 8  # room again
    batcher.stop(5)


def test_a_failing_batch_fails_its_jobs_and_the_worker_lives_on():
    def model(items):
        if -1 in items:
            raise RuntimeError("bad item")
        return items

    batcher = DynamicBatcher(model, max_batch=1, timeout_ms=0, max_queue=4)
    batcher.start()
    with pytest.raises(RuntimeError, match="bad item"):
        batcher.submit(-1).result(5)
    assert batcher.submit(7).result(5) == 7
    batcher.stop(5)


def test_stop_finishes_queued_jobs_first():
    model = GatedModel()
    batcher = DynamicBatcher(model, max_batch=1, timeout_ms=0, max_queue=4)
    batcher.start()
    futures = [batcher.submit(i) for i in range(3)]
    assert model.entered.wait(5)
    stopper = threading.Thread(target=batcher.stop, args=(5,))
    stopper.start()
    model.gate.set()
    stopper.join(5)
    assert [f.result(0) for f in futures] == [0, 2, 4]
