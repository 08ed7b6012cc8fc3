"""``RECORD FILE`` as res_agi answers it, for the call simulator.

    RECORD FILE <filename> <format> <escape digits> <timeout ms> [offset samples] [BEEP]
        [s=<silence s>]

Asterisk beeps first when the word after the offset is ``BEEP``, records until an escape digit,
the timeout (``-1``: none) or a hang-up, and answers ``200 result=<digit code> (dtmf)
endpos=<samples>``, ``200 result=0 (timeout) endpos=<samples>`` or ``200 result=-1 (hangup)
endpos=<samples>``; a file it cannot write is ``200 result=-1 (writefile)``. A relative name is
under the sounds directory, as Asterisk's ``ast_writefile`` puts it, so ``STREAM FILE`` of the
same name plays it back.

The scripted caller speaks for one second per recording, then presses the next key: an escape
digit ends the recording, ``T`` (or no more keys) lets it run to the timeout, ``H`` hangs up.
"""

from __future__ import annotations

import tempfile
import wave
from pathlib import Path

from harness.simulator_commands import ShowUsage, scan_int

RATE = 8000
SPOKEN_S = 1  # how long the simulated caller talks before the key


class RecordFile:
    """The ``RECORD FILE`` handler of ``SimulatedChannel`` (which provides ``keys``, ``event``
    and ``_caller_hangs_up``)."""

    sounds_dir: Path | None = None
    recordings: dict[str, Path]

    def _sounds_dir(self) -> Path:
        if self.sounds_dir is None:
            self.sounds_dir = Path(tempfile.mkdtemp(prefix="sim-sounds-"))
        return self.sounds_dir

    def recorded(self, name: str) -> Path | None:
        """The file a ``RECORD FILE`` of this call wrote under ``name`` (no extension)."""
        return getattr(self, "recordings", {}).get(name)

    async def _record_file(self, argv: list[str]) -> list[str]:
        if len(argv) < 6 or scan_int(argv[5]) is None:
            raise ShowUsage
        name, fmt, escape, timeout_ms = argv[2], argv[3], argv[4], scan_int(argv[5]) or 0
        extra = [w for w in argv[6:]]
        beep = len(extra) >= 2 and scan_int(extra[0]) is not None and extra[1].upper() == "BEEP"
        if beep:
            self.event("beep")
        base = Path(name) if name.startswith("/") else self._sounds_dir() / name
        path = base.with_name(f"{base.name}.{fmt}")
        await self.keys.ensure("record", escape)
        key = self.keys.pop()
        if key == "H":
            samples, result, why = RATE * SPOKEN_S, -1, "hangup"
        elif key is None or key == "T" or key not in escape:
            samples = RATE * (timeout_ms // 1000 if timeout_ms > 0 else SPOKEN_S)
            result, why = 0, "timeout"
        else:
            samples, result, why = RATE * SPOKEN_S, ord(key), "dtmf"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with wave.open(str(path), "wb") as out:
                out.setnchannels(1)
                out.setsampwidth(2)
                out.setframerate(RATE)
                out.writeframes(b"\x00\x00" * samples)
        except OSError:
            self.event("record", name, "writefile")
            return ["200 result=-1 (writefile)"]
        if not hasattr(self, "recordings"):
            self.recordings = {}
        self.recordings[name] = path
        self.event("record", name, f"{why} {samples} samples")
        if why == "dtmf":
            self.event("keys", key)
        if why == "hangup":
            self._caller_hangs_up()
        return [f"200 result={result} ({why}) endpos={samples}"]
