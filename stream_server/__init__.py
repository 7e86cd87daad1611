"""The websocket + HTTP gateway: sessions, segmentation, scheduling and failover, cache, metrics."""
