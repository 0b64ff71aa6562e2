// The softphone's audio, on the audio thread.
//
// patter-capture: microphone samples at the device's rate -> low-pass (windowed-sinc FIR,
// -6 dB at 3.7 kHz) -> resample to 8 kHz -> 20 ms frames of 160 G.711 mu-law bytes, posted to the page.
// patter-playback: mu-law 8 kHz from the page -> a ring buffer -> resampled to the device's
// rate. Marks are echoed when the playhead passes them; `clear` drops what is buffered and
// echoes every pending mark, as Twilio does.
'use strict';

const RATE = 8000;
const FRAME = 160;

function linearToMulaw(x) {
  let s = Math.round(Math.max(-1, Math.min(1, x)) * 32767);
  const sign = s < 0 ? 0x80 : 0;
  if (sign) s = -s;
  if (s > 32635) s = 32635;
  s += 0x84;
  let exponent = 7;
  for (let mask = 0x4000; (s & mask) === 0 && exponent > 0; mask >>= 1) exponent--;
  const mantissa = (s >> (exponent + 3)) & 0x0f;
  return ~(sign | (exponent << 4) | mantissa) & 0xff;
}

const MULAW_TABLE = new Float32Array(256);
for (let i = 0; i < 256; i++) {
  const u = ~i & 0xff;
  const exponent = (u >> 4) & 7;
  const magnitude = ((((u & 0x0f) << 3) + 0x84) << exponent) - 0x84;
  MULAW_TABLE[i] = ((u & 0x80) ? -magnitude : magnitude) / 32768;
}

// Low-pass taps for `rate`: a Blackman-windowed sinc, -6 dB at 3.7 kHz, the telephone band
// flat below and what would fold back from above 4 kHz well down (191 taps: about -25 dB at
// 4 kHz, -70 dB from 4.4 kHz, at 48 kHz).
function lowPass(rate, taps) {
  const cutoff = Math.min(3700, rate / 2) / rate;
  const h = new Float32Array(taps);
  const mid = (taps - 1) / 2;
  let sum = 0;
  for (let n = 0; n < taps; n++) {
    const t = n - mid;
    const sinc = t === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * t) / (Math.PI * t);
    const w = 0.42 - 0.5 * Math.cos((2 * Math.PI * n) / (taps - 1)) + 0.08 * Math.cos((4 * Math.PI * n) / (taps - 1));
    h[n] = sinc * w;
    sum += h[n];
  }
  for (let n = 0; n < taps; n++) h[n] /= sum;
  return h;
}

class Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    // Fewer taps where the input is already near 8 kHz: the filter spans the same time.
    const taps = Math.max(31, Math.round((191 * sampleRate) / 48000) | 1);
    this.taps = lowPass(sampleRate, taps);
    // The raw input, long enough for the filter at two neighbouring points.
    this.history = new Float32Array(taps + 2);
    this.at = 0; // where the next input sample goes
    this.index = 0; // input samples received so far
    this.step = sampleRate / RATE;
    this.next = taps; // where the next 8 kHz sample falls, in input samples
    this.frame = new Uint8Array(FRAME);
    this.filled = 0;
  }

  // The filtered input at sample `k`, one of the last two received.
  filtered(k) {
    const taps = this.taps;
    const n = this.history.length;
    let at = (this.at - 1 - (this.index - 1 - k) + n * 2) % n;
    let acc = 0;
    for (let t = 0; t < taps.length; t++) {
      acc += taps[t] * this.history[at];
      at = at === 0 ? n - 1 : at - 1;
    }
    return acc;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    const n = this.history.length;
    for (let i = 0; i < channel.length; i++) {
      this.history[this.at] = channel[i];
      this.at = (this.at + 1) % n;
      this.index++;
      // The filter is computed only where an 8 kHz sample falls: at the two input samples
      // around it, interpolated.
      while (this.next <= this.index - 1) {
        const k = Math.floor(this.next);
        if (k + 1 > this.index - 1) break;
        const a = this.filtered(k);
        const b = this.filtered(k + 1);
        this.push(a + (b - a) * (this.next - k));
        this.next += this.step;
      }
    }
    if (this.index > 1e9) {
      this.index -= 1e9;
      this.next -= 1e9;
    }
    return true;
  }

  push(sample) {
    this.frame[this.filled++] = linearToMulaw(sample);
    if (this.filled === FRAME) {
      const frame = this.frame;
      this.port.postMessage(frame, [frame.buffer]);
      this.frame = new Uint8Array(FRAME);
      this.filled = 0;
    }
  }
}

class Playback extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ring = new Float32Array(RATE * 180);
    this.written = 0; // 8 kHz samples received
    this.played = 0; // 8 kHz samples played (fractional)
    this.step = RATE / sampleRate;
    this.marks = [];
    this.quanta = 0;
    this.port.onmessage = (event) => this.command(event.data);
  }

  command(message) {
    if (message.type === 'audio') {
      const bytes = message.bytes;
      const size = this.ring.length;
      for (let i = 0; i < bytes.length; i++) this.ring[(this.written + i) % size] = MULAW_TABLE[bytes[i]];
      this.written += bytes.length;
      // Never more than the ring holds: the oldest audio goes.
      if (this.written - this.played > size - 1) this.played = this.written - (size - 1);
    } else if (message.type === 'mark') {
      this.marks.push({ name: message.name, at: this.written });
      this.echoMarks();
    } else if (message.type === 'clear') {
      const heard = this.played;
      this.played = this.written;
      this.echoMarks();
      this.port.postMessage({ type: 'cleared', heard, played: this.played, written: this.written });
    }
  }

  echoMarks() {
    while (this.marks.length > 0 && this.marks[0].at <= this.played) {
      this.port.postMessage({ type: 'played', name: this.marks.shift().name });
    }
  }

  report(type) {
    this.port.postMessage({ type, played: this.played, written: this.written });
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    const size = this.ring.length;
    for (let i = 0; i < out.length; i++) {
      const whole = Math.floor(this.played);
      if (this.written - whole < 2) {
        // Nothing more buffered: silence, and the playhead waits at the last sample.
        out[i] = 0;
        if (this.played < this.written) this.played = this.written;
        continue;
      }
      const frac = this.played - whole;
      const a = this.ring[whole % size];
      const b = this.ring[(whole + 1) % size];
      out[i] = a + (b - a) * frac;
      this.played += this.step;
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    this.echoMarks();
    if (++this.quanta % 16 === 0) this.report('stats');
    return true;
  }
}

registerProcessor('patter-capture', Capture);
registerProcessor('patter-playback', Playback);
