"""The simulator's state in a file, so that a restart changes nothing a user did not change.

What the seed makes is made again at each start; what changed while the simulator ran (keys
and accounts added, companies added, changed, removed, Webhooks integrations, calls placed...)
is written to one JSON file: soon after each change (at most every `interval` seconds, from a
thread of its own) and at stop, replacing the file whole (write, then rename) so a crash leaves
the previous state, never half of one. A file made from other settings (seed, sizes) or by
another version of this format is left unread, and `SimServer.state_note` says so.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from simulator.calls import CallBook
from simulator.data import SimData
from simulator.streams import Streams

FORMAT = 1
"""The version of the file's layout; a file of another version is not loaded."""


class StateFile:
    """Loads the data's state from `path` and keeps the file following the data."""

    def __init__(
        self, path: Path, data: SimData, calls: CallBook, streams: Streams, interval: float = 0.2
    ) -> None:
        self.path = path
        self.data = data
        self.calls = calls
        self.streams = streams
        self.interval = interval
        self._saved = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._write_lock = threading.Lock()
        self.discarded = False
        """Whether `load` found a state file it could not use (and started from the seed)."""

    def load(self) -> str:
        """Take the state from the file, if there is one made from the same settings; what
        happened, in a few words."""
        if not self.path.exists():
            return f"no state at {self.path}: starting from the seed"
        self.discarded = True
        try:
            state = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            return f"state at {self.path} unreadable ({exc}): starting from the seed"
        if state.get("format") != FORMAT or state.get("settings") != self.data.settings():
            return f"state at {self.path} was made from other settings: starting from the seed"
        self.discarded = False
        with self.data.lock:
            self.data.restore(state["data"])
            self.calls.restore(state["calls"])
            self.streams.restore(state.get("streams", {}))
            self._saved = self.data.version
        return f"state loaded from {self.path}"

    def save(self) -> None:
        """Write the state now, if it changed since it was last written."""
        with self._write_lock:
            with self.data.lock:
                version = self.data.version
                if version == self._saved:
                    return
                state = {
                    "format": FORMAT,
                    "settings": self.data.settings(),
                    "data": self.data.dump(),
                    "calls": self.calls.dump(),
                    "streams": self.streams.dump(),
                }
                text = json.dumps(state, separators=(",", ":"))
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_name(self.path.name + ".partial")
            partial.write_text(text)
            os.replace(partial, self.path)
            self._saved = version

    def start(self) -> None:
        """Write each change soon after it is made, from a thread of its own."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sim-state", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following the data, and write what changed since the last write."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.save()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.save()
            except OSError as exc:  # a full disk must not end the simulator
                print(f"simulator: cannot write its state to {self.path}: {exc}", flush=True)
