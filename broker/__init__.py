"""The contract gateway and workers share, and the MQTT edge: topics, messages, audio frames,
the MQTT link, and the local mosquitto launcher."""
