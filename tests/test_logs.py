"""Repeated client errors through an outage: a few lines that say how many alike were held back."""
from __future__ import annotations

import doctest
import logging

import callqa.logs
from callqa.logs import Repeats


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def record(message: str, *args, level=logging.ERROR, name="aiokafka.conn") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, args, None)


def test_a_minute_of_retries_every_50_ms_is_a_few_lines_that_account_for_every_one():
    clock = Clock()
    held = Repeats(max_interval_s=60.0, clock=clock)
    passed = []
    for i in range(1200):  # 60 s at 20 a second, the attempt number changing each time
        clock.now = i * 0.05
        r = record("Unable connect to node with id 1: attempt %d failed", i)
        if held.filter(r):
            passed.append(r.getMessage())
    assert 5 <= len(passed) <= 8  # the first, then at 1, 2, 4, 8, 16, 32 s intervals
    told = sum(int(m.split("(")[-1].split(" alike")[0]) for m in passed[1:])
    assert told + len(passed) <= 1200 and told >= 1200 - 32 * 20 - len(passed)  # only the last interval untold
    assert passed[0] == "Unable connect to node with id 1: attempt 0 failed"


def test_other_kinds_levels_and_a_quiet_spell_pass_at_once():
    clock = Clock()
    held = Repeats(max_interval_s=60.0, clock=clock)
    assert held.filter(record("broker %s down", 1))
    assert not held.filter(record("broker %s down", 2))
    assert held.filter(record("fetch failed"))  # another message
    assert held.filter(record("broker %s down", 3, name="aiokafka.client"))  # another logger
    assert held.filter(record("broker %s down", 4, level=logging.INFO))  # below WARNING: never held
    clock.now = 61.0
    assert held.filter(record("broker %s down", 5))  # quiet for a minute: starts afresh, no count
    assert held.filter(record("broker %s down", 6)) is False


def test_the_module_examples_hold():
    assert doctest.testmod(callqa.logs).failed == 0


def test_a_long_running_process_writes_every_threads_stack_on_the_signal_and_goes_on():
    """``callqa.runtime.stacks_on_signal`` (``callqa run`` and ``callqa sink`` call it): a thread blocked in a
    call shows where, the process carries on."""
    import signal
    import subprocess
    import sys
    import time

    from callqa.runtime import STACKS_SIGNAL
    from tests.conftest import ROOT

    code = ("from callqa.runtime import stacks_on_signal; stacks_on_signal(); import threading, time\n"
            "def blocked_in_a_call(): time.sleep(30)\n"
            "threading.Thread(target=blocked_in_a_call, daemon=True).start(); print('ready', flush=True)\n"
            "time.sleep(2); print('went on', flush=True)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout.readline() == "ready\n"
    time.sleep(0.3)
    proc.send_signal(STACKS_SIGNAL)
    out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0 and out.rstrip().endswith("went on")
    assert "in blocked_in_a_call" in out and out.count("(most recent call first)") == 2
    assert STACKS_SIGNAL not in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)  # faust's own handlers
