"""Each call on one TFLite thread or on several, whichever has been faster lately
(densehead.engine.thread_choice): the policy on given call times, and the real graphs giving the
same answers whichever thread count runs them."""
from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
from helpers import shared_pipeline

from densehead import Pipeline
from densehead.engine.detector import letterbox
from densehead.engine.runtime import TFLiteRunner
from densehead.engine.thread_choice import (
    FIRST_LOOK,
    LAST_LOOK,
    LOOK_CALLS,
    AdaptiveRunner,
    ThreadPolicy,
    make_runner,
    thread_use,
)
from densehead.io.image import read_image


def run_policy(policy: ThreadPolicy, ms_by_threads: dict[int, float], calls: int,
               first_look_ms: float | None = None,
               machine: Callable[[int], float] = lambda call: 1.0) -> list[int]:
    """Feed the policy `calls` calls taking ms_by_threads[threads] times machine(call) (how
    slow the machine is then), the first call of each look `first_look_ms` if given; the thread
    count each call ran on."""
    ran = []
    for call in range(calls):
        index = policy.next()
        threads = policy.threads[index]
        first = policy.looking and not policy.look
        ms = ms_by_threads[threads] * machine(call)
        policy.record(first_look_ms if first and first_look_ms is not None else ms)
        ran.append(threads)
    return ran


def longest_run(ran: list[int], threads: int) -> int:
    """The most calls in a row run on `threads`."""
    longest = current = 0
    for t in ran:
        current = current + 1 if t == threads else 0
        longest = max(longest, current)
    return longest


def test_a_busy_machine_moves_the_calls_to_one_thread_and_a_quiet_one_back():
    policy = ThreadPolicy((1, 2))
    # busy: the two threads wait for each other, one thread is faster
    ran = run_policy(policy, {1: 1.2, 2: 1.6}, FIRST_LOOK + 4 * LOOK_CALLS + 50)
    assert ran[:FIRST_LOOK] == [2] * FIRST_LOOK          # it starts on the count asked for
    # moved at the first look; the looks at two threads are a few calls each
    assert policy.threads[policy.use] == 1 and ran[-50:].count(1) >= 50 - 4 * LOOK_CALLS
    # quiet again: the second thread pays; the next look moves back
    ran = run_policy(policy, {1: 1.2, 2: 0.8}, FIRST_LOOK + 4 * LOOK_CALLS + 50)
    assert policy.threads[policy.use] == 2 and ran[-50:].count(2) >= 50 - 4 * LOOK_CALLS


def test_a_slower_other_count_is_looked_at_less_and_less_and_never_taken():
    policy = ThreadPolicy((1, 2))
    ran = run_policy(policy, {1: 1.2, 2: 0.9}, 3000)
    assert longest_run(ran, 1) == LOOK_CALLS           # one thread only ever for a look
    assert policy.look_every == LAST_LOOK and policy.threads[policy.use] == 2
    assert ran.count(1) < 0.03 * len(ran)
    # within the margin (noise) nothing moves either
    policy = ThreadPolicy((1, 2))
    ran = run_policy(policy, {1: 0.95, 2: 1.0}, 1000)
    assert policy.threads[policy.use] == 2 and longest_run(ran, 1) == LOOK_CALLS


def test_one_slow_call_of_a_look_does_not_decide():
    """The first call on the interpreter not in use finds its weights out of the cache and its
    threads asleep: however slow, the look's other calls decide."""
    policy = ThreadPolicy((1, 2))
    ran = run_policy(policy, {1: 1.0, 2: 1.6}, FIRST_LOOK + 4 * LOOK_CALLS + 10,
                     first_look_ms=50.0)
    assert policy.threads[policy.use] == 1 and ran[-10:] == [1] * 10


def test_a_machine_that_slows_down_and_speeds_up_does_not_move_the_calls():
    """Rounds of calls with pauses between them, or a neighbour that comes and goes: the
    machine is three times slower in every other spell of 20 calls, for both thread counts
    alike. Two threads stay the faster, whichever spell a look falls in."""
    policy = ThreadPolicy((1, 2))
    ran = run_policy(policy, {1: 1.0, 2: 0.7}, 5000,
                     machine=lambda call: 3.0 if call // 20 % 2 else 1.0)
    assert policy.threads[policy.use] == 2 and longest_run(ran, 1) == LOOK_CALLS


def test_a_regressor_and_a_detector_answer_the_same_on_either_thread_count(mb05_graph, samples,
                                                                           detector_graph):
    """Whichever interpreter a call lands on, the answer is what a fixed runner gives: both run
    the same graph, and XNNPACK splits a call's work by output tiles, so it is bit for bit
    the same on the CPUs measured. The tolerance leaves room for a kernel that splits a sum
    differently on another CPU, a million times below what a landmark could show."""
    image = read_image(samples / "photos" / "emma.jpg")
    crop = np.ascontiguousarray(image[100:220, 300:420])
    inputs = {mb05_graph: crop[None], detector_graph: letterbox(image)[0]}
    for graph, x in inputs.items():
        expected = TFLiteRunner(graph, 1)(x)
        runner = make_runner(graph, 2, adapt=True)
        assert isinstance(runner, AdaptiveRunner)
        for use in (0, 1):
            runner._policy.use = use
            for got, want in zip(runner(x), expected):
                np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        assert runner.calls == {1: 1, 2: 1}
        assert thread_use(runner) == "2 threads 50%, 1 thread 50%"
    assert isinstance(make_runner(mb05_graph, 2, adapt=False), TFLiteRunner)
    assert isinstance(make_runner(mb05_graph, 1, adapt=True), TFLiteRunner)


def test_a_pipeline_finds_the_same_faces_with_adapting_and_fixed_threads(samples):
    image = read_image(samples / "photos" / "trump_hillary.jpg")
    adapting = shared_pipeline()
    fixed = Pipeline(regressor="mb05", adapt_threads=False)
    assert adapting.options.adapt_threads and adapting.options.num_threads == 2
    assert isinstance(adapting.loaded.regressor, AdaptiveRunner)
    assert isinstance(fixed.loaded.regressor, TFLiteRunner)
    ours, theirs = adapting(image).faces, fixed(image).faces
    assert len(ours) == len(theirs) == 2
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-3)   # pixels
        np.testing.assert_allclose(a.box, b.box, atol=1e-3)


@pytest.fixture(scope="module")
def mb05_graph():
    return shared_pipeline().loaded.compiled_path


@pytest.fixture(scope="module")
def detector_graph():
    return shared_pipeline().detector.network.path
