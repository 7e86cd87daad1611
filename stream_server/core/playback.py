"""When a session's listener runs dry: the playback deadline of its next sentence. Pure.

The listener plays the audio it was sent at real time, from when it arrived. ``PlaybackClock``
follows that from what the session sends (``sent(seconds, now)``): ``heard_until`` is when the
audio sent so far has finished playing. A sentence is needed when everything before it has been
heard: ``need_at(ahead_s, now)``, where ``ahead_s`` is the audio still to come before it (sentences
ahead of it not yet sent, estimated from their text). A session that is not playing needs its next
sentence now. The scheduler and the workers serve the earliest need first, and a sentence whose need
is far is not failed over early (docs/architecture.md, "Scheduling by playback deadline").

The same clock says when a turn's text must be cut before its sentence is complete (``runs_dry``):
the listener is playing, and what it has (and what is still coming ahead of the text) will have
played before the text could be cut and synthesized (``deadline_lead_s``: a chunk's way from its cut
to its first audio, a streamed word's arrival to spare, and its synthesis, longer for more text;
core/deadline_cut.py). A listener that is not playing (nothing sent yet: the turn's first chunk is
on its way, or no voice answers) has nothing to run dry.
"""

from __future__ import annotations

from dataclasses import dataclass

DEADLINE_LEAD_S = 0.35  # a cut chunk's way to its listener's first audio, and a word to spare
SYNTHESIS_S_PER_S = 0.15  # its synthesis: seconds per second of its expected audio (Piper, loaded)
CHARS_PER_SECOND = 14.0  # speech rate for a sentence's expected audio (as the failover estimate)


def expected_audio_s(text: str) -> float:
    """Seconds of speech a text is expected to make."""
    return len(text) / CHARS_PER_SECOND


def deadline_lead_s(text: str) -> float:
    """How long before its listener runs dry ``text`` must be cut to be heard in time."""
    return DEADLINE_LEAD_S + SYNTHESIS_S_PER_S * expected_audio_s(text)


@dataclass(slots=True)
class PlaybackClock:
    heard_until: float = 0.0  # when the audio sent so far has been played (the gateway's clock)
    now: float = 0.0  # the latest time it was told of
    emitting_s: float = 0.0  # audio the session has emitted that ``sent`` has not been told of yet

    def sent(self, seconds: float, now: float) -> None:
        """Audio of ``seconds`` went to the listener at ``now``."""
        self.seen(now)
        self.heard_until = max(self.heard_until, now) + max(0.0, seconds)
        self.emitting_s = max(0.0, self.emitting_s - seconds)

    def played_by(self, now: float) -> float:
        """When what was sent, and what is being sent now, will have played."""
        return max(self.heard_until, now) + self.emitting_s if self.emitting_s else self.heard_until

    def seen(self, now: float) -> None:
        self.now = max(self.now, now)

    def buffered_s(self, now: float) -> float:
        """Audio sent and not yet played."""
        return max(0.0, self.heard_until - now)

    def need_at(self, ahead_s: float, now: float) -> float:
        """When a sentence with ``ahead_s`` of audio still to come before it is needed."""
        return max(now, self.heard_until) + max(0.0, ahead_s)

    def runs_dry(self, ahead_s: float, now: float, lead_s: float = DEADLINE_LEAD_S) -> bool:
        """Is the listener playing, and will it have played everything (``ahead_s`` of audio still
        to come included) within ``lead_s``? (Then text that would follow must be cut now.)"""
        return self.played_by(now) > now and self.need_at(ahead_s, now) - now <= lead_s
