"""The events stage in worker processes: the embedded runner on several cores (a backfill).

``EventProcesses`` holds the events stage's partitions for a ``LocalGraph``: worker ``i`` of N
(spawned) owns the partitions ``p`` with ``p % N == i`` and runs them as ``EventsHere`` does; every
stage downstream stays in the parent. The graph delivers the workers' results in partition order, as
one process does, so the rows and the saved state are the same as with no workers.

A batch goes out pickled (raw lines stay bytes) to the workers owning its partitions; the results
come back as orjson (rows, counts, bundles) and are delivered as they are: the wire is the copy Kafka
would make. Both go through files in a spool folder (in ``/dev/shm`` when there is one) and the pipes
carry only their paths, so neither side waits for the other to read a big message while it computes.

Profiles: an ``agent.profile`` written by a worker comes back with its batch; the parent's graph takes
it before running that batch downstream, the other workers before their next batch (the graph
collects a batch holding a profile before it submits another).

A worker that dies (killed, out of memory) or fails stops the run: ``WorkerFailed`` with its exit code
or its traceback. Workers exit when the parent closes their pipe (or dies).
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
import shutil
import signal
import tempfile
import traceback
import weakref
from collections import Counter, deque
from collections.abc import Callable
from itertools import count
from multiprocessing.connection import Connection
from pathlib import Path

import orjson

from .core.graph import Context, Output
from .core.kpi import KpiConfig
from .core.local import EventsHere, Sent
from .core.sampling import PolicyConfig
from .runtime import fewer_full_collections


class WorkerFailed(RuntimeError):
    """An events worker process died or raised; the message says which and why."""


class _Noted(dict):
    """Agents' profiles that note which were written since last asked (``taken``)."""

    def __init__(self, profiles: dict):
        super().__init__(profiles)
        self.written: dict[str, dict] = {}

    def __setitem__(self, agent: str, profile: dict) -> None:
        super().__setitem__(agent, profile)
        self.written[agent] = profile

    def taken(self) -> dict[str, dict]:
        written, self.written = self.written, {}
        return written


def _encode(results: list[Sent], profiles: dict) -> bytes:
    return orjson.dumps({"results": [[p, out.rows, out.counts, [[s, q, b] for (s, q), b in bundles.items()]]
                                     for p, out, bundles in results], "profiles": profiles})


def _put(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _take(path: str) -> bytes:
    data = Path(path).read_bytes()
    os.unlink(path)
    return data


def _work(inbox: Connection, outbox: Connection, kpi: KpiConfig, policy: PolicyConfig, sampling_key: bytes,
          partitions: int, partition_of: Callable[[str, int], int], mine: list[int], store_raw: bool,
          spool: Path) -> None:
    """A worker: the path of its partitions' state and the profiles first, then ``(kind, body)``
    messages until the pipe closes: ``run`` a batch (a path), ``idle``, take ``profiles``, send back
    the ``state`` (and stop). It answers with the path of its results, or its traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    fewer_full_collections()  # it holds its partitions' state
    try:
        state = orjson.loads(_take(inbox.recv()))
        profiles = _Noted(state["profiles"])
        here = EventsHere(Context(kpi, policy, sampling_key, partitions, partition_of, profiles), state["events"],
                          store_raw, mine)
        for n in count():
            kind, body = inbox.recv()
            if kind == "profiles":
                dict.update(profiles, body)
                continue
            if kind == "state":
                outbox.send(("ok", _put(spool / f"{mine[0]}-state", orjson.dumps(here.close()))))
                return
            results = here.run(pickle.loads(_take(body))) if kind == "run" else here.idle(body)
            outbox.send(("ok", _put(spool / f"{mine[0]}-{n}", _encode(results, profiles.taken()))))
    except EOFError:  # the parent is gone
        return
    except Exception:
        outbox.send(("failed", traceback.format_exc()))
        raise SystemExit(1)


class EventProcesses:
    """The events stage's partitions in ``processes`` worker processes (see the module); the
    interface of ``EventsHere``. Workers start at once; ``state`` is ``{partition: parts}``."""

    def __init__(self, processes: int, ctx: Context, state: dict[str, dict], store_raw: bool = False):
        if not 1 <= processes <= ctx.partitions:
            raise ValueError(f"{processes} processes for {ctx.partitions} partitions: each owns one or more")
        self.ctx = ctx
        self.ahead = 1  # the workers run a batch while the parent runs the one before downstream (more
        # batches ahead only leave the parent, the slower side, a longer tail alone at the end)
        self.owner = {p: p % processes for p in range(ctx.partitions)}
        self._asked: deque[list[int]] = deque()  # per submitted batch: the workers it went to
        self._spool = Path(tempfile.mkdtemp(prefix="callqa-backfill-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
        self._remove_spool = weakref.finalize(self, shutil.rmtree, self._spool, True)  # at the latest on exit
        self._batches = count()
        self._inboxes: list[Connection] = []
        self._outboxes: list[Connection] = []
        self._processes = []
        spawn = multiprocessing.get_context("spawn")
        for i in range(processes):
            mine = [p for p in range(ctx.partitions) if self.owner[p] == i]
            inbox_reader, inbox = spawn.Pipe(duplex=False)
            outbox, outbox_writer = spawn.Pipe(duplex=False)
            process = spawn.Process(target=_work, name=f"callqa-events-{i}", daemon=True, args=(
                inbox_reader, outbox_writer, ctx.kpi, ctx.policy, ctx.sampling_key, ctx.partitions, ctx.partition_of,
                mine, store_raw, self._spool))
            process.start()
            inbox_reader.close()  # the worker's ends: only it holds them, so its death is our EOF
            outbox_writer.close()
            self._inboxes.append(inbox)
            self._outboxes.append(outbox)
            self._processes.append(process)
            setup = {"events": {str(p): state.get(str(p), {}) for p in mine}, "profiles": ctx.profiles}
            self._send(i, _put(self._spool / f"setup-{i}", orjson.dumps(setup)))

    def submit(self, batches: dict[int, list]) -> None:
        """Each worker its partitions' messages of the batch."""
        mine: dict[int, dict[int, list]] = {}
        for p, messages in batches.items():
            mine.setdefault(self.owner[p], {})[p] = messages
        n = next(self._batches)
        for i, batch in mine.items():
            self._send(i, ("run", _put(self._spool / f"batch-{n}-{i}", pickle.dumps(batch, pickle.HIGHEST_PROTOCOL))))
        self._asked.append(sorted(mine))

    def collect(self) -> list[Sent]:
        """The oldest batch's results, in partition order (its profiles taken first, see the module)."""
        return self._gather(self._asked.popleft())

    def idle(self, finished: bool) -> list[Sent]:
        for i in range(len(self._processes)):
            self._send(i, ("idle", finished))
        return self._gather(range(len(self._processes)))

    def close(self) -> dict[str, dict]:
        """Every partition's state, from the workers; they stop."""
        state: dict[str, dict] = {}
        for i in range(len(self._processes)):
            self._send(i, ("state", None))
        for i, process in enumerate(self._processes):
            state.update(orjson.loads(self._answer(i)))
            process.join()
        self.stop()
        return dict(sorted(state.items(), key=lambda item: int(item[0])))

    def stop(self) -> None:
        """Stop the workers (at once, if still running) and remove the spool."""
        for inbox, process in zip(self._inboxes, self._processes):
            inbox.close()
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()
        self._remove_spool()

    def _gather(self, workers) -> list[Sent]:
        results: list[Sent] = []
        for i in workers:
            answer = orjson.loads(self._answer(i))
            if answer["profiles"]:
                self.ctx.profiles.update(answer["profiles"])
                for other in range(len(self._processes)):
                    if other != i:
                        self._send(other, ("profiles", answer["profiles"]))
            results.extend((p, Output(rows=rows, counts=Counter(counts)), {(s, q): b for s, q, b in bundles})
                           for p, rows, counts, bundles in answer["results"])
        return sorted(results, key=lambda sent: sent[0])

    def _answer(self, i: int) -> bytes:
        try:
            status, body = self._outboxes[i].recv()
        except (EOFError, OSError):
            raise self._died(i) from None
        if status == "failed":
            raise self._died(i, body)
        return _take(body)

    def _send(self, i: int, message) -> None:
        try:
            self._inboxes[i].send(message)
        except OSError:
            raise self._died(i) from None

    def _died(self, i: int, why: str | None = None) -> WorkerFailed:
        """The error for worker ``i`` gone: its traceback when it raised (said before it exited)."""
        self.stop()
        outbox = self._outboxes[i]
        try:
            while why is None and outbox.poll():
                status, body = outbox.recv()
                why = body if status == "failed" else None
        except (EOFError, OSError):
            pass
        if why is not None:
            return WorkerFailed(f"events worker {i} failed; the run's state was not saved:\n{why}")
        code = self._processes[i].exitcode
        return WorkerFailed(f"events worker {i} (pid {self._processes[i].pid}) died"
                            f"{'' if code is None else f' (exit code {code})'}; the run's state was not saved: run it again")
