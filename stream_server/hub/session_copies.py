"""Copies of what each session is sent, on its MQTT topics (``sessions/{id}/events`` and
``sessions/{id}/audio``, SESAME_PUBLISH_SESSION_EVENTS) for those who watch a session.

A copy made during a pass of the hub is published once the pass's frames are written
(``send_pass.py``): a watcher's copy never stands between the hub and a client's frame (issue 20).
Outside a pass (an encoded sentence's frames, ``Interpreter._pump``) it is published at once.
"""

from __future__ import annotations

from broker import topics
from broker.wire import Message
from stream_server.hub.send_pass import SendPass
from stream_server.mqtt.outbound import MqttOut, Publish


class SessionCopies:
    def __init__(self, out: MqttOut, send_pass: SendPass, *, enabled: bool) -> None:
        self.out, self.send_pass, self.enabled = out, send_pass, enabled
        self._held: list[tuple[str, Message | bytes]] = []

    def event(self, session_id: str, message: Message) -> None:
        if self.enabled:
            self._publish(topics.session_events(session_id), message)

    def audio(self, session_id: str, frame: bytes) -> None:
        if self.enabled:
            self._publish(topics.session_audio(session_id), frame)

    def _publish(self, topic: str, item: Message | bytes) -> None:
        if not self.send_pass.open:
            self._send(topic, item)
            return
        if not self._held:
            self.send_pass.later(self)
        self._held.append((topic, item))

    def flush(self) -> None:
        held, self._held = self._held, []
        for topic, item in held:
            self._send(topic, item)

    def _send(self, topic: str, item: Message | bytes) -> None:
        payload = item if isinstance(item, bytes) else item.to_bytes()
        self.out.send(Publish(topic, payload, 0), control=False)
