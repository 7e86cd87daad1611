"""The gateway's MQTT adapters: what arrives (as typed values), what is published, MQTT-only sessions."""
