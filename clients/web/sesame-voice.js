// sesame-voice browser client: websocket protocol v1 (docs/protocol.md) + Web Audio playback.
//
//   import { SesameVoice } from "/sesame-voice.js";
//   const voice = new SesameVoice();
//   voice.on("sentence_start", (m) => console.log(m.engine, m.text));
//   await voice.connect();            // ws(s)://<this host>/ws by default
//   voice.speak("Hello there. How are you?");
//
// Audio: one AudioContext at the session's sample rate feeding an AudioWorklet (player-worklet.js)
// that acts as a jitter buffer (prebuffer at the start of each turn, gap-free across frames and
// sentences, underruns counted). See docs/web-client.md.

export const PROTOCOL = 1;
const MAGIC_S = 0x53; // "S"
const MAGIC_V = 0x56; // "V"
const HEADER_SIZE = 16;
const ENCODINGS = ["pcm16", "wav", "ogg", "mp3", "flac"];
const EVENTS = [
  "ready", "sentence_start", "sentence_end", "turn_end", "error", "fallback", "cancelled",
  "open", "close", "drained", "stats", "reconnecting", "reconnect",
];
// Close codes after which the client reconnects by itself: the server is restarting (1012, sent
// by a draining gateway after its `reconnect` message), going away (1001), or the connection
// broke (1006); also "try again later" (1013).
const RECONNECT_CODES = new Set([1001, 1006, 1012, 1013]);

/** Parse the 16-byte little-endian frame header. Throws on a frame that is not ours. */
export function parseFrameHeader(buffer) {
  if (buffer.byteLength < HEADER_SIZE) throw new Error("audio frame shorter than its header");
  const view = new DataView(buffer);
  if (view.getUint8(0) !== MAGIC_S || view.getUint8(1) !== MAGIC_V) throw new Error("audio frame: bad magic");
  const version = view.getUint8(2);
  if (version !== 1) throw new Error(`audio frame: unknown version ${version}`);
  const encoding = ENCODINGS[view.getUint8(3)];
  if (!encoding) throw new Error(`audio frame: unknown encoding ${view.getUint8(3)}`);
  return {
    encoding,
    seq: view.getUint32(4, true),
    index: view.getUint32(8, true),
    sampleRate: view.getUint32(12, true),
  };
}

/** PCM16 little-endian mono payload -> Float32 samples in [-1, 1]. */
export function pcm16ToFloat32(buffer, byteOffset = HEADER_SIZE) {
  const count = (buffer.byteLength - byteOffset) >> 1;
  const view = new DataView(buffer, byteOffset, count * 2);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = view.getInt16(i * 2, true) / 32768;
  return out;
}

/** Linear resampling, used only if a frame's rate differs from the AudioContext's. */
function resampleLinear(samples, from, to) {
  if (from === to || samples.length === 0) return samples;
  const n = Math.max(1, Math.round((samples.length * to) / from));
  const out = new Float32Array(n);
  const step = from / to;
  for (let i = 0; i < n; i++) {
    const x = i * step;
    const i0 = Math.floor(x);
    const i1 = Math.min(i0 + 1, samples.length - 1);
    const f = x - i0;
    out[i] = samples[Math.min(i0, samples.length - 1)] * (1 - f) + samples[i1] * f;
  }
  return out;
}

/** `unheard` after the heard `sentence` (whitespace aside, as the gateway normalizes it); kept whole
 * when the sentence is not its beginning (better heard twice than lost). As clients/reconnect.py. */
export function consumeHeard(unheard, sentence) {
  const target = sentence.replace(/\s+/g, "");
  let i = 0;
  let matched = 0;
  while (i < unheard.length && matched < target.length) {
    const ch = unheard[i];
    if (!/\s/.test(ch)) {
      if (ch !== target[matched]) return unheard;
      matched += 1;
    }
    i += 1;
  }
  return matched === target.length ? unheard.slice(i) : unheard;
}

function defaultUrl() {
  const scheme = globalThis.location && location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${globalThis.location ? location.host : "127.0.0.1:8000"}/ws`;
}

export class SesameVoice {
  /**
   * @param {object} [options]
   * @param {number} [options.prebufferMs=100] audio collected before a turn starts playing
   * @param {number} [options.rebufferMs=60] audio collected before resuming after an underrun
   * @param {string|URL} [options.workletUrl] where player-worklet.js is (default: beside this module)
   * @param {(context: AudioContext) => AudioNode} [options.destination] where to play
   *   (default: the context's speakers); called each time an AudioContext is made
   * @param {boolean} [options.autoReconnect=true] reconnect after close codes 1001/1006/1012/1013
   *   (a gateway reload), send the last `start` again, then whatever was sent meanwhile
   * @param {number} [options.reconnectMaxMs=5000] the longest wait between reconnect attempts
   */
  constructor(options = {}) {
    this.prebufferMs = options.prebufferMs ?? 100;
    this.rebufferMs = options.rebufferMs ?? 60;
    this.workletUrl = options.workletUrl ?? new URL("./player-worklet.js", import.meta.url);
    this.destination = options.destination ?? null;
    this.autoReconnect = options.autoReconnect ?? true;
    this.reconnectMaxMs = options.reconnectMaxMs ?? 5000;
    this.reconnects = 0;
    this._url = null;
    this._startOpts = null; // replayed after a reconnect
    this._pending = []; // messages sent while reconnecting, sent once the new session is ready
    // Resume (docs/protocol.md): the server frames of this session received after its opening
    // `ready`, every client frame sent in it, and the secret of the last `ready` (docs/security.md).
    this._heard = 0;
    this._sent = [];
    this._resumeToken = null;
    // The text of the turn not heard yet (sent or held), said again to a new session after a
    // reconnect that could not resume (another gateway); and whether a flush followed it.
    this._unheard = "";
    this._flushed = false;
    this._reconnecting = false;
    this._attempt = 0;
    this._userClosed = false;
    this._reconnectTimer = null;
    this.ws = null;
    this.session = null; // the last `ready` message
    this.context = null;
    this.node = null;
    // [{seq, turn, text, engine, cached, restarts, fallback, samples, done, error,
    //   startedAt, firstAudioAt, endedAt}] (times: performance.now() when each message arrived)
    this.sentences = [];
    this.underrunLog = []; // the last 100 underruns: {at, seq (the sentence that ran dry), playedMs}
    this.stats = {
      framesReceived: 0,
      framesScheduled: 0,
      framesDropped: 0, // received after a cancel, or superseded before being scheduled
      samplesScheduled: 0,
      samplesPlayed: 0,
      samplesDropped: 0, // scheduled, then dropped by cancel or a restart
      bufferedMs: 0,
      underruns: 0,
      underrunMs: 0,
      contextState: "none",
      playerState: "idle",
      sentences: 0,
      turns: 0,
      fallbacks: 0,
      errors: 0,
    };
    this._listeners = new Map(EVENTS.map((name) => [name, new Set()]));
    this._bySeq = new Map();
    this._ops = Promise.resolve(); // audio work, in arrival order
    this._generation = 0; // bumped by cancel(): queued audio work of an older generation is dropped
    this._discarding = false; // between cancel() and the server's `cancelled`
    this._audioReady = null;
    this._audioRate = 0;
    this._readyWaiters = [];
  }

  // -- events ------------------------------------------------------------------------------------

  /** Subscribe to an event; returns a function that unsubscribes. */
  on(name, fn) {
    const set = this._listeners.get(name);
    if (!set) throw new Error(`unknown event ${name}; known: ${EVENTS.join(", ")}`);
    set.add(fn);
    return () => set.delete(fn);
  }

  off(name, fn) {
    this._listeners.get(name)?.delete(fn);
  }

  _emit(name, payload) {
    for (const fn of this._listeners.get(name)) {
      try {
        fn(payload, this);
      } catch (err) {
        console.error(`sesame-voice: ${name} listener failed`, err);
      }
    }
  }

  // -- connection --------------------------------------------------------------------------------

  /** Open the websocket (default ws(s)://<page host>/ws); resolves with the server's `ready`. */
  connect(url = defaultUrl()) {
    this._closeSocket();
    this._url = url;
    this._userClosed = false;
    this._heard = 0;
    this._sent = [];
    this._resumeToken = null;
    this._unheard = "";
    this._flushed = false;
    return this._open(url);
  }

  _open(url) {
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    const ready = this._nextReady();
    let opening = true; // the first frame is the `ready` (or error) that answers the connect
    ws.onopen = () => this._emit("open", { url });
    ws.onmessage = (event) => {
      if (this.ws !== ws) return;
      if (opening) opening = false;
      else this._heard += 1;
      this.receive(event.data);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this._queue((node) => node.port.postMessage({ type: "turn_end" })); // nothing more will come
      const reason = { code: event.code, reason: event.reason, wasClean: event.wasClean };
      for (const waiter of this._readyWaiters.splice(0)) waiter.reject(new Error(`websocket closed (${event.code})`));
      this._emit("close", reason);
      if (this.autoReconnect && !this._userClosed && RECONNECT_CODES.has(event.code)) {
        this._scheduleReconnect(event.code);
      }
    };
    return ready;
  }

  _scheduleReconnect(code) {
    this._reconnecting = true;
    const cap = Math.min(this.reconnectMaxMs, 100 * 2 ** this._attempt);
    const delay = cap * (0.5 + Math.random() / 2); // jittered exponential backoff
    this._attempt += 1;
    this._emit("reconnecting", { code, attempt: this._attempt, delayMs: Math.round(delay) });
    this._reconnectTimer = setTimeout(() => this._reconnect(code), delay);
  }

  async _reconnect(code) {
    this._reconnectTimer = null;
    if (this._userClosed) return;
    try {
      // Resume the session when the gateway still holds it: its id, the token of its last
      // `ready`, and how many of its frames arrived. Otherwise the answer is a new session.
      const previous = this.session ? this.session.session_id : null;
      let url = this._url;
      if (previous && this._resumeToken) {
        const u = new URL(this._url);
        u.searchParams.set("session_id", previous);
        u.searchParams.set("resume_token", this._resumeToken);
        u.searchParams.set("heard", String(this._heard));
        url = u.toString();
      }
      const ready = await this._open(url);
      if (ready.resumed && ready.session_id === previous) {
        // The gateway replays what this client did not hear; send again what it did not get.
        for (const raw of this._sent.slice(ready.received)) this.ws.send(raw);
      } else {
        this._heard = 0;
        this._sent = [];
        this._bySeq.clear(); // a new session numbers its sentences from 0 again
        if (this._startOpts) await this.start(this._startOpts, true);
        // Say again what this turn has not heard; it includes the text held meanwhile.
        this._pending = this._pending.filter((m) => !["text", "flush", "speak"].includes(m.type));
        if (this._unheard.trim()) {
          this._sendNow({ type: "text", text: this._unheard });
          if (this._flushed) this._sendNow({ type: "flush" });
        }
      }
    } catch (err) {
      // A socket that closed again schedules the next attempt itself (onclose). One that is open
      // but refused the replayed `start` will not get better: stop and say so.
      if (this.ws !== null) {
        this._reconnecting = false;
        this._pending = [];
        this._emit("error", { type: "error", code: "reconnect_failed", message: String(err), seq: null });
      }
      return;
    }
    this._attempt = 0;
    this._reconnecting = false;
    this.reconnects += 1;
    for (const msg of this._pending.splice(0)) this._send(msg);
    this._emit("reconnect", { code, reconnects: this.reconnects });
  }

  /** Configure the session: {voice, format, sample_rate}; resolves with the new `ready`. */
  start(opts = {}, replay = false) {
    if (!replay) this._startOpts = { ...opts };
    const msg = { type: "start" };
    for (const key of ["voice", "format", "sample_rate"]) if (opts[key] !== undefined) msg[key] = opts[key];
    const ready = this._nextReady("start");
    this._sendNow(msg); // not queued: a replayed start must go first
    return ready;
  }

  /** Append text (any fragment, even half a word). */
  sendText(fragment) {
    this._beginTurn();
    this._unheard += fragment;
    this._flushed = false;
    this._send({ type: "text", text: fragment });
  }

  /** End the turn: the server speaks whatever remains. */
  flush() {
    this._flushed = true;
    this._send({ type: "flush" });
  }

  /** Text + flush in one message. */
  speak(text) {
    this._beginTurn();
    this._unheard += text;
    this._flushed = true;
    this._send({ type: "speak", text });
  }

  /** Barge-in: stop playback at once and tell the server to drop the turn. */
  cancel() {
    this._generation += 1;
    this._discarding = true;
    this._unheard = "";
    this._flushed = false;
    if (this.node) this.node.port.postMessage({ type: "clear" });
    if (this.connected) this._send({ type: "cancel" });
    else this._discarding = false; // no server to confirm it; nothing more will arrive anyway
  }

  /** Close the websocket and the audio context. */
  close() {
    this._userClosed = true;
    this._reconnecting = false;
    this._pending = [];
    if (this._reconnectTimer !== null) clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    this._closeSocket();
    if (this.context) {
      this.context.close().catch(() => {});
      this.context = null;
      this.node = null;
      this._audioReady = null;
      this._audioRate = 0;
      this.stats.contextState = "closed";
    }
  }

  /** Resume the AudioContext (call from a user gesture: browsers suspend audio until one). */
  async resume() {
    if (this.context && this.context.state === "suspended") await this.context.resume();
    this._updateContextState();
  }

  get connected() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  _closeSocket() {
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000, "client closed");
    for (const waiter of this._readyWaiters.splice(0)) waiter.reject(new Error("closed by the client"));
  }

  _nextReady(kind = "connect") {
    return new Promise((resolve, reject) => this._readyWaiters.push({ kind, resolve, reject }));
  }

  _sendNow(msg) {
    const raw = JSON.stringify(msg);
    this._sent.push(raw);
    this.ws.send(raw);
  }

  _send(msg) {
    if (this.connected && !this._reconnecting) {
      this._sendNow(msg);
      return;
    }
    if (this.autoReconnect && this._url && !this._userClosed && (this._reconnecting || this.ws === null)) {
      // Between the server's `reconnect` (or a dropped connection) and the new session: keep it.
      this._pending.push(msg);
      return;
    }
    throw new Error("sesame-voice: not connected");
  }

  _beginTurn() {
    // Speaking from a user gesture is the usual moment the browser lets audio start.
    if (this.context && this.context.state === "suspended") this.context.resume().catch(() => {});
  }

  // -- server messages -----------------------------------------------------------------------------

  /**
   * Handle one server message: a JSON string (control) or an ArrayBuffer (audio frame). The
   * websocket calls this; a page that carries the protocol over its own transport can too.
   */
  receive(data) {
    if (typeof data === "string") this._onControl(data);
    else this._onAudio(data);
  }

  _onControl(raw) {
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch {
      this._clientError("bad_json", "the server sent a text frame that is not JSON");
      return;
    }
    switch (msg.type) {
      case "ready":
        this.session = msg;
        if (msg.resume_token) this._resumeToken = msg.resume_token; // each ready voids the last
        this._ensureAudio(msg.sample_rate || 24000);
        for (const waiter of this._readyWaiters.splice(0)) waiter.resolve(msg);
        this._emit("ready", msg);
        break;
      case "sentence_start":
        this._onSentenceStart(msg);
        break;
      case "sentence_end": {
        const rec = this._bySeq.get(msg.seq);
        if (rec) {
          rec.samples = msg.samples;
          rec.done = true;
          rec.endedAt = performance.now();
          this._unheard = consumeHeard(this._unheard, rec.text);
        }
        if (!this._discarding) this._queue((node) => node.port.postMessage({ type: "sentence_end" }));
        this._emit("sentence_end", msg);
        break;
      }
      case "turn_end":
        this.stats.turns += 1;
        this._unheard = "";
        this._flushed = false;
        if (!this._discarding) this._queue((node) => node.port.postMessage({ type: "turn_end" }));
        this._emit("turn_end", msg);
        break;
      case "fallback": {
        this.stats.fallbacks += 1;
        const rec = this._bySeq.get(msg.seq);
        if (rec) rec.fallback = { from: msg.from, to: msg.to, reason: msg.reason };
        this._emit("fallback", msg);
        break;
      }
      case "error": {
        this.stats.errors += 1;
        const rec = msg.seq === null || msg.seq === undefined ? null : this._bySeq.get(msg.seq);
        if (rec) rec.error = msg;
        if (msg.text) this._unheard = consumeHeard(this._unheard, msg.text); // texted: heard as text
        if (rec === null) {
          // A refused `start` (unknown voice, bad rate, too late): fail the promise start() returned.
          const waiters = this._readyWaiters.filter((w) => w.kind === "start");
          this._readyWaiters = this._readyWaiters.filter((w) => w.kind !== "start");
          for (const waiter of waiters) waiter.reject(Object.assign(new Error(msg.message), { code: msg.code }));
        }
        this._emit("error", msg);
        break;
      }
      case "cancelled":
        this._discarding = false;
        this._emit("cancelled", msg);
        break;
      case "reconnect":
        // The gateway is being replaced: it closes this socket (1012) once this session's turn has
        // finished. Hold what is sent from now on for the next session.
        if (this.autoReconnect) this._reconnecting = true;
        this._emit("reconnecting", { code: null, reason: msg.reason ?? "server asked", attempt: 0 });
        break;
      default:
        // A newer server may add message types; ignore what this client does not know.
        break;
    }
  }

  _onSentenceStart(msg) {
    if (this._discarding) return;
    let rec = this._bySeq.get(msg.seq);
    if (rec && msg.restart) {
      // The sentence is redone from its beginning by another engine: drop what is not yet played.
      rec.restarts += 1;
      rec.engine = msg.engine;
      rec.cached = Boolean(msg.cached);
      rec.done = false;
      const seq = msg.seq;
      this._queue((node) => node.port.postMessage({ type: "drop", seq }));
    } else if (!rec) {
      rec = {
        seq: msg.seq, turn: msg.turn, text: msg.text, engine: msg.engine, cached: Boolean(msg.cached),
        restarts: 0, fallback: null, samples: 0, done: false, error: null,
        startedAt: performance.now(), firstAudioAt: null, endedAt: null,
      };
      this._bySeq.set(msg.seq, rec);
      this.sentences.push(rec);
      this.stats.sentences += 1;
    }
    this._queue((node) => node.port.postMessage({ type: "expect" }));
    this._emit("sentence_start", msg);
  }

  _onAudio(buffer) {
    this.stats.framesReceived += 1;
    if (this._discarding) {
      this.stats.framesDropped += 1;
      return;
    }
    let header;
    try {
      header = parseFrameHeader(buffer);
    } catch (err) {
      this.stats.framesDropped += 1;
      this._clientError("bad_audio_frame", err.message);
      return;
    }
    const rec = this._bySeq.get(header.seq);
    if (rec && rec.firstAudioAt === null) rec.firstAudioAt = performance.now();
    const generation = this._generation;
    this._queue(async (node) => {
      let samples;
      if (header.encoding === "pcm16") {
        samples = resampleLinear(pcm16ToFloat32(buffer), header.sampleRate, node.context.sampleRate);
      } else {
        // wav/flac/ogg/mp3: one whole encoded file per sentence; the browser decodes and resamples.
        const audio = await node.context.decodeAudioData(buffer.slice(HEADER_SIZE));
        samples = audio.getChannelData(0).slice();
      }
      if (generation !== this._generation) {
        this.stats.framesDropped += 1;
        return;
      }
      const count = samples.length; // read before the buffer is transferred (and detached)
      node.port.postMessage({ type: "push", seq: header.seq, samples }, [samples.buffer]);
      this.stats.framesScheduled += 1;
      this.stats.samplesScheduled += count;
    });
  }

  _clientError(code, message) {
    this.stats.errors += 1;
    this._emit("error", { type: "error", code, message, seq: null, text: null, local: true });
  }

  // -- audio -------------------------------------------------------------------------------------

  /** Run fn(node) after the audio work queued before it, once the player node exists. */
  _queue(fn) {
    const ready = this._audioReady;
    if (!ready) return;
    this._ops = this._ops
      .then(() => ready)
      .then(fn)
      .catch((err) => this._clientError("audio_failed", String(err && err.message ? err.message : err)));
  }

  _ensureAudio(rate) {
    if (this.context && this._audioRate === rate) return;
    if (this.context) this.context.close().catch(() => {});
    this._audioRate = rate;
    const context = new AudioContext({ sampleRate: rate, latencyHint: "interactive" });
    this.context = context;
    context.onstatechange = () => this._updateContextState();
    this._updateContextState();
    this._audioReady = context.audioWorklet.addModule(this.workletUrl).then(() => {
      const node = new AudioWorkletNode(context, "sesame-player", {
        numberOfInputs: 0,
        numberOfOutputs: 1,
        outputChannelCount: [1],
        processorOptions: {
          prebufferSamples: Math.round((rate * this.prebufferMs) / 1000),
          rebufferSamples: Math.round((rate * this.rebufferMs) / 1000),
        },
      });
      node.port.onmessage = (event) => this._onPlayer(event.data);
      node.connect(this.destination ? this.destination(context) : context.destination);
      if (this.context === context) this.node = node;
      return node;
    });
  }

  _onPlayer(msg) {
    if (msg.type === "stats") {
      const rate = this.context ? this.context.sampleRate : this._audioRate || 24000;
      this.stats.playerState = msg.state;
      this.stats.bufferedMs = Math.round((msg.buffered * 1000) / rate);
      this.stats.samplesPlayed = msg.played;
      this.stats.samplesDropped = msg.dropped;
      this.stats.underruns = msg.underruns;
      this.stats.underrunMs = Math.round((msg.underrunSamples * 1000) / rate);
      this._emit("stats", this.stats);
    } else if (msg.type === "underrun") {
      const rate = this.context ? this.context.sampleRate : this._audioRate || 24000;
      this.underrunLog.push({ at: performance.now(), seq: msg.seq, playedMs: Math.round((msg.played * 1000) / rate) });
      if (this.underrunLog.length > 100) this.underrunLog.shift();
    } else if (msg.type === "drained") {
      this._emit("drained", this.stats);
    }
  }

  _updateContextState() {
    this.stats.contextState = this.context ? this.context.state : "none";
  }
}
