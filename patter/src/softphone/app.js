// The softphone page: a Twilio Media Streams client in the browser.
//
// It speaks to /softphone/media exactly as Twilio speaks to a Media Streams server
// (`connected`, `start`, `media` with sequence numbers, chunks and timestamps, `mark` echoes,
// `dtmf`, `stop`), and shows what /softphone/events reports of the call. The run's token
// comes from the URL fragment, which browsers never send to a server, and travels as a
// WebSocket subprotocol.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const token = new URLSearchParams(location.hash.slice(1)).get('token');
  const FRAME_MS = 20;

  // What the page did, for anyone looking (the browser tests read it).
  const debug = {
    state: 'idle', framesSent: 0, mediaLogged: 0, marksReceived: [], marksEchoed: [], clears: 0, keys: '', sent: [],
    played: 0, written: 0, playedAtClear: [], responseTimes: [], ended: null,
  };
  window.patterSoftphone = debug;

  let call = null;

  function hex(bytes) {
    const b = new Uint8Array(bytes);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  }

  function base64(bytes) {
    let text = '';
    for (let i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
    return btoa(text);
  }

  function unbase64(text) {
    const raw = atob(text);
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes;
  }

  function status(text) {
    $('status').textContent = text;
  }

  function note(list, className, text) {
    const item = document.createElement('li');
    item.className = className;
    item.textContent = text;
    $(list).append(item);
    item.scrollIntoView({ block: 'nearest' });
    return item;
  }

  function showToolCall(event) {
    const item = document.createElement('li');
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = event.name;
    const time = document.createElement('span');
    time.className = 'time';
    time.textContent = 'running…';
    const args = document.createElement('code');
    args.textContent = event.arguments;
    item.append(name, time, args);
    $('tool-calls').append(item);
    return { item, time };
  }

  function showToolResult(pending, event) {
    let shown = pending.shift();
    if (!shown) shown = showToolCall({ name: event.name, arguments: '' });
    shown.time.textContent = `${event.ms} ms`;
    if (!event.ok) shown.item.classList.add('failed');
    const output = document.createElement('code');
    output.textContent = `${event.ok ? '→' : '✗'} ${event.output}`;
    shown.item.append(output);
  }

  function showResponseTime(ms) {
    debug.responseTimes.push(ms);
    $('last-response').textContent = `${ms} ms`;
    const mean = debug.responseTimes.reduce((a, b) => a + b, 0) / debug.responseTimes.length;
    $('mean-response').textContent = `${Math.round(mean)} ms`;
  }

  function openSocket(path) {
    const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    return new WebSocket(scheme + location.host + path, ['patter-softphone', `token.${token}`]);
  }

  async function start() {
    if (!token) {
      status('This page needs the address the server printed: it carries the token.');
      return;
    }
    $('call').disabled = true;
    status('Asking for the microphone…');
    let media;
    try {
      media = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
      });
    } catch (error) {
      status(`No microphone: ${error.message}`);
      $('call').disabled = false;
      return;
    }
    let context;
    let capture;
    let playback;
    try {
      context = new AudioContext();
      await context.audioWorklet.addModule('/softphone/worklet.js');
      capture = new AudioWorkletNode(context, 'patter-capture', { numberOfOutputs: 1 });
      const mute = context.createGain();
      mute.gain.value = 0;
      context.createMediaStreamSource(media).connect(capture).connect(mute).connect(context.destination);
      playback = new AudioWorkletNode(context, 'patter-playback', {
        numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1],
      });
      playback.connect(context.destination);
      await context.resume();
    } catch (error) {
      media.getTracks().forEach((track) => track.stop());
      if (context) context.close();
      status(`The audio could not start: ${error.message}`);
      $('call').disabled = false;
      return;
    }

    const callSid = `CA${hex(16)}`;
    const streamSid = `MZ${hex(16)}`;
    const accountSid = `AC${'0'.repeat(32)}`;
    call = { media, context, capture, playback, callSid, streamSid, accountSid, sequence: 0, chunk: 0, socket: null, events: null, started: false, answeredIn: null, pendingTools: [] };
    const current = call;

    const send = (message) => {
      if (!current.socket || current.socket.readyState !== WebSocket.OPEN) return;
      const text = JSON.stringify(message);
      // Everything but the audio, and the first second of that.
      if (message.event !== 'media' || debug.mediaLogged++ < 50) {
        if (debug.sent.length < 1000) debug.sent.push(text);
      }
      current.socket.send(text);
    };
    const sequence = () => String(++current.sequence);
    current.send = send;
    current.sequenceNumber = sequence;

    status('Connecting…');
    current.events = openSocket(`/softphone/events?call=${callSid}`);
    current.events.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (event.type === 'ready') connectMedia(current);
      else if (event.type === 'transcript') {
        const item = note('transcript', event.role, event.text);
        // Each answer shows how long the caller waited for it.
        if (event.role === 'agent' && current.answeredIn !== null) {
          const waited = document.createElement('small');
          waited.textContent = `answered in ${current.answeredIn} ms`;
          item.append(waited);
          current.answeredIn = null;
        }
      }
      else if (event.type === 'tool_call') current.pendingTools.push(showToolCall(event));
      else if (event.type === 'tool_result') showToolResult(current.pendingTools, event);
      else if (event.type === 'response_time') {
        current.answeredIn = event.ms;
        showResponseTime(event.ms);
      }
      else if (event.type === 'ended') {
        debug.ended = event.reason;
        note('transcript', 'note', `Call ended: ${event.reason}.`);
      }
    };
    current.events.onerror = () => {
      if (current.socket === null) finish(current, 'The server refused the call (is this the address it printed?).');
    };

    capture.port.onmessage = (message) => {
      // Audio starts with the stream: nothing before `start`, as on a phone line.
      if (!current.started || current.socket.readyState !== WebSocket.OPEN) return;
      const frame = message.data;
      current.chunk += 1;
      send({
        event: 'media', sequenceNumber: sequence(), streamSid,
        media: { track: 'inbound', chunk: String(current.chunk), timestamp: String((current.chunk - 1) * FRAME_MS), payload: base64(frame) },
      });
      debug.framesSent += 1;
    };
    playback.port.onmessage = (message) => {
      const data = message.data;
      debug.played = data.played ?? debug.played;
      debug.written = data.written ?? debug.written;
      if (data.type === 'played') {
        debug.marksEchoed.push(data.name);
        send({ event: 'mark', sequenceNumber: sequence(), streamSid, mark: { name: data.name } });
      } else if (data.type === 'cleared') {
        debug.playedAtClear.push(data.heard);
      }
      $('heard').textContent = `${(debug.played / 8000).toFixed(1)} s`;
    };
  }

  function connectMedia(current) {
    const socket = openSocket('/softphone/media');
    current.socket = socket;
    socket.onopen = () => {
      current.send({ event: 'connected', protocol: 'Call', version: '1.0.0' });
      current.send({
        event: 'start', sequenceNumber: current.sequenceNumber(), streamSid: current.streamSid,
        start: {
          streamSid: current.streamSid, accountSid: current.accountSid, callSid: current.callSid,
          tracks: ['inbound'], customParameters: { caller: 'browser', callee: 'agent', direction: 'inbound' },
          mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
        },
      });
      current.started = true;
      debug.state = 'in-call';
      status('In call. Speak.');
      const button = $('call');
      button.textContent = 'Hang up';
      button.classList.add('hangup');
      button.disabled = false;
    };
    socket.onmessage = (message) => {
      const msg = JSON.parse(message.data);
      if (msg.event === 'media') current.playback.port.postMessage({ type: 'audio', bytes: unbase64(msg.media.payload) });
      else if (msg.event === 'mark') {
        debug.marksReceived.push(msg.mark.name);
        current.playback.port.postMessage({ type: 'mark', name: msg.mark.name });
      }
      else if (msg.event === 'clear') {
        debug.clears += 1;
        current.playback.port.postMessage({ type: 'clear' });
      }
    };
    socket.onclose = () => finish(current, current.started ? 'Call ended.' : 'The server refused the call.');
  }

  function hangUp() {
    const current = call;
    if (!current) return;
    current.send({
      event: 'stop', sequenceNumber: current.sequenceNumber(), streamSid: current.streamSid,
      stop: { accountSid: current.accountSid, callSid: current.callSid },
    });
    if (current.socket) current.socket.close(1000);
    finish(current, 'Call ended.');
  }

  function finish(current, text) {
    if (current !== call) return;
    call = null;
    debug.state = 'ended';
    current.media.getTracks().forEach((track) => track.stop());
    current.context.close();
    // The server says on the events socket how the call ended, then closes it; if it
    // cannot (the call never started), the page closes it.
    const events = current.events;
    setTimeout(() => {
      if (events && events.readyState !== WebSocket.CLOSED) events.close(1000);
    }, 3000);
    status(text);
    const button = $('call');
    button.textContent = 'Call';
    button.classList.remove('hangup');
    button.disabled = false;
  }

  $('call').addEventListener('click', () => (call ? hangUp() : start()));
  for (const key of document.querySelectorAll('#keypad button')) {
    key.addEventListener('click', () => {
      if (!call) return;
      debug.keys += key.dataset.key;
      call.send({
        event: 'dtmf', streamSid: call.streamSid, sequenceNumber: call.sequenceNumber(),
        dtmf: { track: 'inbound_track', digit: key.dataset.key },
      });
    });
  }
  if (!token) status('Open the address the server printed: it carries the token.');
})();
