"""Audio as the gateway hands it out: container encoders, speed, SSE framing."""
