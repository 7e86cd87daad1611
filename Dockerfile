# One image for gateway and workers; the command picks the role.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends espeak-ng curl && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY broker broker
COPY synth_worker synth_worker
COPY stream_server stream_server
COPY clients clients
COPY sesame_voice sesame_voice
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir ".[piper]"
ENV LOG_LEVEL=INFO
# Not root: a user of its own, owning nothing but its state directory. The gateway listens on
# 0.0.0.0 inside the container, so it needs SESAME_AUTH_TOKEN (it refuses to start without).
RUN useradd --system --uid 10001 --home-dir /var/lib/sesame --create-home sesame
USER sesame
ENV SESAME_STATE_DIR=/var/lib/sesame/state
EXPOSE 8000
CMD ["sesame-voice", "gateway", "--host", "0.0.0.0"]
