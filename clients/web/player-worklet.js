// AudioWorklet jitter buffer for sesame-voice: mono Float32 chunks in, gap-free playback out.
//
// Messages from the main thread (port):
//   {type: "config", prebufferSamples, rebufferSamples}
//   {type: "push", seq, samples: Float32Array}   queue audio (transferred)
//   {type: "expect"}                             a turn is in progress: running dry now is an underrun
//   {type: "sentence_end"}                       all audio of the current sentence is queued
//   {type: "turn_end"}                           no more audio for this turn: play out what is left
//   {type: "drop", seq}                          drop the not-yet-played audio of sentence seq (restart)
//   {type: "clear"}                              cancel: drop everything queued, now
// Messages to the main thread: {type: "stats", ...} on every change of state and about every 100 ms
// while playing, {type: "underrun", seq, played} when it runs dry while audio is owed, and
// {type: "drained"} when the buffer ran out with nothing more expected.
//
// States: idle (nothing to play) -> prebuffering (collect prebufferSamples at the start of a turn,
// or rebufferSamples after an underrun) -> playing -> idle. The prebuffer is skipped once the
// sentence or the turn is known to be complete, so a short last sentence is not held back.

class PlayerProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.prebufferSamples = opts.prebufferSamples || Math.round(sampleRate * 0.1);
    this.rebufferSamples = opts.rebufferSamples || Math.round(sampleRate * 0.06);
    this.queue = []; // [{seq, data: Float32Array, offset}]
    this.buffered = 0;
    this.state = "idle";
    this.expected = false; // audio for the current turn is still on its way
    this.complete = false; // what is queued is a whole sentence or turn: no need to wait for more
    this.target = this.prebufferSamples;
    this.recovering = false; // prebuffering again after an underrun
    this.underruns = 0;
    this.underrunFrames = 0; // render quanta spent dry while audio was expected
    this.played = 0;
    this.lastSeq = null; // the sentence last played from
    this.dropped = 0;
    this.quanta = 0;
    this.port.onmessage = (event) => this.onMessage(event.data);
  }

  onMessage(msg) {
    switch (msg.type) {
      case "config":
        if (msg.prebufferSamples >= 0) this.prebufferSamples = msg.prebufferSamples;
        if (msg.rebufferSamples >= 0) this.rebufferSamples = msg.rebufferSamples;
        break;
      case "push":
        if (msg.samples.length === 0) break;
        this.queue.push({ seq: msg.seq, data: msg.samples, offset: 0 });
        this.buffered += msg.samples.length;
        if (this.state === "idle") {
          this.state = "prebuffering";
          this.target = this.prebufferSamples;
          this.report();
        }
        break;
      case "expect":
        this.expected = true;
        this.complete = false;
        break;
      case "sentence_end":
        this.complete = true;
        break;
      case "turn_end":
        this.expected = false;
        this.complete = true;
        break;
      case "drop": {
        const kept = [];
        for (const chunk of this.queue) {
          if (chunk.seq === msg.seq) this.dropped += chunk.data.length - chunk.offset;
          else kept.push(chunk);
        }
        this.queue = kept;
        this.buffered = kept.reduce((n, c) => n + c.data.length - c.offset, 0);
        this.complete = false;
        if (this.buffered === 0 && this.state === "playing") {
          // The sentence starts over in another voice: a deliberate restart (the server reports it
          // as a fallback), not an underrun. Collect a little of the redo before playing it.
          this.state = "prebuffering";
          this.target = this.rebufferSamples;
        }
        this.report();
        break;
      }
      case "clear":
        for (const chunk of this.queue) this.dropped += chunk.data.length - chunk.offset;
        this.queue = [];
        this.buffered = 0;
        this.expected = false;
        this.complete = false;
        this.recovering = false;
        this.state = "idle";
        this.report();
        break;
      default:
        break;
    }
  }

  report() {
    this.port.postMessage({
      type: "stats",
      state: this.state,
      buffered: this.buffered,
      played: this.played,
      dropped: this.dropped,
      underruns: this.underruns,
      underrunSamples: this.underrunFrames,
    });
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    if (!out) return true;
    const n = out.length;
    if (this.state === "prebuffering" && (this.buffered >= this.target || this.complete || !this.expected)) {
      if (this.buffered > 0) {
        this.state = "playing";
        this.recovering = false;
        this.report();
      }
    }
    if (this.state !== "playing") {
      out.fill(0);
      if (this.recovering && this.expected) {
        this.underrunFrames += n; // still recovering from an underrun
      }
      return true;
    }
    let written = 0;
    while (written < n && this.queue.length > 0) {
      const chunk = this.queue[0];
      const take = Math.min(n - written, chunk.data.length - chunk.offset);
      out.set(chunk.data.subarray(chunk.offset, chunk.offset + take), written);
      this.lastSeq = chunk.seq;
      chunk.offset += take;
      written += take;
      if (chunk.offset >= chunk.data.length) this.queue.shift();
    }
    this.buffered -= written;
    this.played += written;
    if (written < n) {
      out.fill(0, written);
      if (this.expected) {
        // Ran dry while the turn still owes audio: an audible gap. Rebuffer a little before resuming.
        this.underruns += 1;
        this.port.postMessage({ type: "underrun", seq: this.lastSeq, played: this.played });
        this.underrunFrames += n - written;
        this.state = "prebuffering";
        this.target = this.rebufferSamples;
        this.recovering = true;
        this.complete = false;
        this.report();
      } else {
        this.state = "idle";
        this.report();
        this.port.postMessage({ type: "drained" });
      }
      return true;
    }
    if (++this.quanta % 32 === 0) this.report(); // ~100 ms at 24 kHz
    return true;
  }
}

registerProcessor("sesame-player", PlayerProcessor);
