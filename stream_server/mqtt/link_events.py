"""What the gateway does when its MQTT link lands on a broker node or loses it (an adapter).

On every connection (the first, or on another node after one died): the cancels that did not get
out, the MQTT-only sessions' part (our claims again; claim-only opening where the node refused the
shared subscription), and after a move the worker jobs in flight again (``moved``: their replies
in between are lost). ``sesame_mqtt_node{node}`` is 1 for the node in use and 0 for the others;
``sesame_mqtt_connects_total{node}`` counts connections.
"""

from __future__ import annotations

from collections.abc import Callable

from broker.link import MqttLink
from stream_server.monitoring.metrics import Metrics
from stream_server.mqtt.outbound import MqttOut
from stream_server.mqtt.topic_sessions import MqttSessions


class LinkEvents:
    def __init__(
        self,
        link: MqttLink,
        metrics: Metrics,
        out: MqttOut,
        mqtt_sessions: MqttSessions,
        moved: Callable[[], None],
    ) -> None:
        self.metrics = metrics
        self.out = out
        self.mqtt_sessions = mqtt_sessions
        self.moved = moved
        self.nodes = link.nodes
        link.on_connect = self.connected
        link.on_disconnect = self.lost
        self._no_node()

    async def connected(self, link: MqttLink) -> None:
        self._no_node()
        if link.node is not None:
            self.metrics.mqtt_node.labels(str(link.node)).set(1)
            self.metrics.mqtt_connects.labels(str(link.node)).inc()
        self.out.resend_cancels()
        if link.connects > 1:  # before any await: a timer pass must not judge the deaf time
            self.moved()
        await self.mqtt_sessions.connected(link)

    def lost(self) -> None:
        self._no_node()
        self.out.link_lost()

    def _no_node(self) -> None:
        for node in self.nodes.urls:
            self.metrics.mqtt_node.labels(str(node)).set(0)
