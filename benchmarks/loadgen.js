#!/usr/bin/env node
// Cheap Socket.IO load generator for chatapp and the Node reference server.
//
// It talks Engine.IO v4 / Socket.IO v5 text frames over plain `ws` sockets
// (websocket transport only) instead of using socket.io-client, so one Node
// process on one core can drive thousands of connections and ~10^5 deliveries/s
// without becoming the bottleneck. Run it with --help for the options.
//
// Phases: connect (in bounded-concurrency batches) -> warmup -> measure ->
// drain (stop sending, wait for outstanding acks/deliveries) -> one JSON line
// on stdout. Progress goes to stderr.
//
// Correctness: every message sent gets a per-room sequence number k (inside
// its text, together with the send time). Each client keeps a bitset of the k
// it received, so duplicates are exact; per room we keep how many clients were
// in the room when k was sent and how many received it, so lost is exact too.
'use strict';

const fs = require('fs');
const path = require('path');
const zlib = require('zlib');
const { performance, monitorEventLoopDelay } = require('perf_hooks');
const WebSocket = require('ws');

// ---------------------------------------------------------------- options --

const DEFAULTS = {
  url: 'http://127.0.0.1:8080',
  clients: 20,
  rooms: 2,
  senders: 1, // per room
  follow: 1, // rooms each client is in: its own, and follow - 1 more by `subscribe`
  mode: 'closed', // closed | rate | idle
  rate: 1, // msgs/s per room (mode=rate)
  inflight: 1, // outstanding messages per sender (mode=closed)
  duration: 10, // s, measured window
  warmup: 2, // s, traffic before the measured window (not in latency/throughput)
  drain: 5, // s, max wait for outstanding acks/deliveries after sending stops
  deflate: false,
  connectConcurrency: 200, // handshakes in flight at once
  connectTimeout: 120, // s, for the whole connect phase
  settle: 1, // s, wait after connecting before sampling server RSS
  reconnect: false, // at the end, drop every connection at once and reconnect them all
  msgSize: 0, // pad message text to at least this many characters
  roomPrefix: 'bench',
  serverPid: '', // comma-separated pids to sample from /proc
  clkTck: 100, // sysconf(_SC_CLK_TCK); run.py passes the real value
  maxOutstanding: 2000, // per room, mode=rate: skip sends beyond this many unacked
  label: '',
  assertCorrect: false,
  wsInflate: false, // use ws's own (thread pool) inflate instead of installSyncInflate()
  localAddress: '', // source address of the clients (another 127.0.0.x is another client address)
  hoggers: 0, // extra connections that ask for history pages at their allowed rate
  hogLimit: 100, // messages per history page they ask for
  hogRate: 20, // history requests per second per hogger at most (and retry_after when refused)
  hogAddress: '', // source address of the hoggers
  preload: 0, // messages sent to the hoggers' room before anything else
  preloadSize: 2000, // characters per preloaded message
  preloadChar: 'p', // the character they repeat (an emoji makes 4 bytes of each)
};

const HELP = `usage: node loadgen.js [options]
  --url URL[,URL...]      server base URL(s); clients are spread over them (default ${DEFAULTS.url})
  --clients N             connections (default ${DEFAULTS.clients})
  --rooms R               rooms; client i joins room i % R (default ${DEFAULTS.rooms})
  --senders S             senders per room, the first S clients of each room (default ${DEFAULTS.senders})
  --follow F              rooms each client is in: the one it connects to (i % R) and F - 1 more it
                          subscribes to, spread evenly over the others (default ${DEFAULTS.follow}); the
                          senders send to the room they connected to
  --mode closed|rate|idle closed: each sender sends its next message when the previous one is acked;
                          rate: --rate msgs/s per room, open loop; idle: connect and hold, no messages
  --rate X                msgs/s per room in rate mode (default ${DEFAULTS.rate})
  --inflight K            unacked messages per sender in closed mode (default ${DEFAULTS.inflight})
  --duration S            measured seconds (default ${DEFAULTS.duration})
  --warmup S              seconds of traffic before measuring (default ${DEFAULTS.warmup})
  --drain S               max seconds to wait for outstanding acks/deliveries (default ${DEFAULTS.drain})
  --deflate               offer permessage-deflate like a browser does
  --connect-concurrency N handshakes in flight at once (default ${DEFAULTS.connectConcurrency})
  --connect-timeout S     limit for the whole connect phase (default ${DEFAULTS.connectTimeout})
  --settle S              pause after connecting before sampling server RSS (default ${DEFAULTS.settle})
  --reconnect             after the run, drop every connection at once (as a server restart
                          does) and reconnect them all, each with \`since\`: the last id it has
  --msg-size N            pad message text to N characters (default: no padding)
  --room-prefix P         room names are P0, P1, ... (default ${DEFAULTS.roomPrefix})
  --server-pid PID[,PID]  sample server CPU and memory from /proc
  --clk-tck N             clock ticks per second for /proc/PID/stat (default ${DEFAULTS.clkTck})
  --max-outstanding N     rate mode: per-room cap on unacked messages; extra sends are skipped and counted
  --ws-inflate            with --deflate, keep ws's own asynchronous inflate (several times costlier
                          per message than the synchronous one used by default)
  --local-address ADDR    source address of the clients, e.g. 127.0.0.2 (another client address)
  --hoggers N             extra connections in their own room ("<room-prefix>hog") that ask for
                          history pages at their allowed rate: --hog-rate per second at most,
                          waiting retry_after when refused; reported under "hog"
  --hog-limit N           messages per page they ask for (default ${DEFAULTS.hogLimit})
  --hog-rate X            requests per second per hogger at most (default ${DEFAULTS.hogRate})
  --hog-address ADDR      source address of the hoggers (default: the system's)
  --preload N             messages of --preload-size characters sent to the hoggers' room first
                          (from --local-address), so that their pages are big
  --preload-size N        characters per preloaded message (default ${DEFAULTS.preloadSize})
  --preload-char C        the character repeated in them (default ${DEFAULTS.preloadChar}; an emoji is 4 bytes)
  --label TEXT            copied into the result
  --assert-correct        exit 1 unless connected == clients, acked == sent, lost == 0, duplicates == 0
Prints one JSON line on stdout.`;

function parseArgs(argv) {
  const o = { ...DEFAULTS };
  const camel = (s) => s.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    if (a === '-h' || a === '--help') {
      process.stdout.write(HELP + '\n');
      process.exit(0);
    }
    if (!a.startsWith('--')) fail(`unexpected argument: ${a}`);
    let value = null;
    const eq = a.indexOf('=');
    if (eq >= 0) {
      value = a.slice(eq + 1);
      a = a.slice(0, eq);
    }
    const key = camel(a.slice(2));
    if (!(key in DEFAULTS)) fail(`unknown option: ${a}`);
    if (typeof DEFAULTS[key] === 'boolean') {
      o[key] = value === null ? true : !['0', 'false', 'no'].includes(value);
      continue;
    }
    if (value === null) {
      if (i + 1 >= argv.length) fail(`${a} needs a value`);
      value = argv[++i];
    }
    if (typeof DEFAULTS[key] === 'number') {
      const n = Number(value);
      if (!Number.isFinite(n) || n < 0) fail(`${a} needs a non-negative number`);
      o[key] = n;
    } else {
      o[key] = value;
    }
  }
  if (!['closed', 'rate', 'idle'].includes(o.mode)) fail('--mode must be closed, rate or idle');
  if (o.clients < 1 || o.rooms < 1) fail('--clients and --rooms must be >= 1');
  if (o.mode === 'idle') o.senders = 0;
  o.clients = Math.floor(o.clients);
  o.rooms = Math.floor(o.rooms);
  o.senders = Math.floor(o.senders);
  o.follow = Math.max(1, Math.floor(o.follow));
  if (o.follow > o.rooms) fail('--follow must be <= --rooms');
  o.inflight = Math.max(1, Math.floor(o.inflight));
  o.connectConcurrency = Math.max(1, Math.floor(o.connectConcurrency));
  o.urls = o.url.split(',').map((u) => toWsUrl(u.trim()));
  o.pids = o.serverPid ? o.serverPid.split(',').map((p) => Number(p)) : [];
  return o;
}

function fail(msg) {
  process.stderr.write(`loadgen: ${msg}\n`);
  process.exit(2);
}

function toWsUrl(u) {
  const url = new URL(u);
  url.protocol = url.protocol === 'https:' ? 'wss:' : url.protocol === 'http:' ? 'ws:' : url.protocol;
  url.pathname = '/socket.io/';
  url.search = '?EIO=4&transport=websocket';
  return url.toString();
}

function log(msg) {
  process.stderr.write(`[loadgen ${(performance.now() / 1000).toFixed(1)}s] ${msg}\n`);
}

// -------------------------------------------------------- cheaper inflate --

// ws inflates every compressed frame with two round trips through libuv's
// thread pool (write + flush): ~50-70 us of CPU per small message here, so with
// hundreds of clients receiving every broadcast the load generator, not the
// server, would be the bottleneck with --deflate. Node has no public
// synchronous *streaming* zlib API (zlib.inflateRawSync is one-shot, and
// re-inflating with the last 32 KiB as a preset dictionary costs ~45 us), so
// this drives the zlib stream's native handle synchronously, the way Node's own
// zlib.*Sync functions do internally, keeping one stream per connection (RFC
// 7692 context takeover): ~3 us per message. It checks the internals it relies
// on and inflates a sample first; if anything differs, ws's path is kept and
// the result says inflate "ws-async".
const Z_SYNC_FLUSH = zlib.constants.Z_SYNC_FLUSH;
const DEFLATE_TRAILER = Buffer.from([0x00, 0x00, 0xff, 0xff]); // RFC 7692 7.2.2

class SyncInflater {
  constructor(windowBits) {
    this.stream = zlib.createInflateRaw({ windowBits });
    this.handle = this.stream._handle;
    this.state = this.stream._writeState; // [availOutAfter, availInAfter], filled by writeSync
    this.error = null;
    this.stream.on('error', (err) => {
      this.error = err;
    });
    this.out = Buffer.allocUnsafe(65536);
    this.outOff = 0;
  }

  static usable() {
    try {
      const sample = Buffer.from('42["message",{"id":1,"text":"sync inflate self-test"}]');
      const deflated = zlib.deflateRawSync(sample, { finishFlush: Z_SYNC_FLUSH });
      const inf = new SyncInflater(15);
      if (typeof inf.handle?.writeSync !== 'function' || !(inf.state instanceof Uint32Array)) return false;
      const ok = inf.inflate(deflated).equals(sample); // deflated already ends with the trailer
      inf.close();
      return ok;
    } catch {
      return false;
    }
  }

  // Inflates one complete message (its fragments plus the trailer).
  inflate(input) {
    const parts = [];
    let inOff = 0;
    let inLen = input.length;
    for (;;) {
      if (this.out.length - this.outOff < 1024) {
        this.out = Buffer.allocUnsafe(65536); // earlier results keep the old buffer
        this.outOff = 0;
      }
      const availOut = this.out.length - this.outOff;
      this.handle.writeSync(Z_SYNC_FLUSH, input, inOff, inLen, this.out, this.outOff, availOut);
      if (this.error) throw this.error;
      const availOutAfter = this.state[0];
      const availInAfter = this.state[1];
      const have = availOut - availOutAfter;
      if (have > 0) {
        parts.push(this.out.subarray(this.outOff, this.outOff + have));
        this.outOff += have;
      }
      inOff += inLen - availInAfter;
      inLen = availInAfter;
      if (availOutAfter !== 0) break; // output space left over: all input consumed
    }
    return parts.length === 1 ? parts[0] : Buffer.concat(parts);
  }

  reset() {
    this.stream.reset();
  }

  close() {
    this.stream.close();
  }
}

function installSyncInflate() {
  let PerMessageDeflate;
  try {
    // Not in ws's package exports, hence the file path.
    PerMessageDeflate = require(path.join(path.dirname(require.resolve('ws')), 'lib', 'permessage-deflate.js'));
  } catch {
    return false;
  }
  const proto = PerMessageDeflate.prototype;
  if (typeof proto.decompress !== 'function' || typeof proto.cleanup !== 'function') return false;
  if (!SyncInflater.usable()) return false;

  const EMPTY = Buffer.alloc(0);
  proto.decompress = function decompress(data, fin, callback) {
    if (!fin) {
      // A fragment: inflate the whole message once its last fragment is here.
      (this._syncFragments || (this._syncFragments = [])).push(data);
      process.nextTick(callback, null, EMPTY);
      return;
    }
    const endpoint = this._isServer ? 'client' : 'server';
    let result = null;
    let error = null;
    try {
      if (!this._syncInflater) {
        const bits = this.params[`${endpoint}_max_window_bits`];
        this._syncInflater = new SyncInflater(typeof bits === 'number' ? bits : zlib.constants.Z_DEFAULT_WINDOWBITS);
      }
      const parts = this._syncFragments || [];
      this._syncFragments = null;
      result = this._syncInflater.inflate(Buffer.concat([...parts, data, DEFLATE_TRAILER]));
      if (this.params[`${endpoint}_no_context_takeover`]) this._syncInflater.reset();
    } catch (err) {
      error = err;
    }
    // ws's receiver expects this callback asynchronously (it re-enters its
    // parsing loop otherwise); only the callback is deferred.
    process.nextTick(callback, error, result);
  };
  const cleanup = proto.cleanup;
  proto.cleanup = function patchedCleanup() {
    if (this._syncInflater) {
      this._syncInflater.close();
      this._syncInflater = null;
    }
    return cleanup.call(this);
  };
  return true;
}

// -------------------------------------------------------------- histogram --

// Log-bucketed histogram with ~1% relative error: bounded memory however many
// samples a run produces. Values are milliseconds; the resolution floor is 1 us.
class Histogram {
  constructor() {
    this.base = Math.log(1.01);
    this.counts = new Float64Array(2200); // 1.01^2200 us ~ 3e9 us: far above any run length
    this.n = 0;
    this.max = 0;
    this.sum = 0;
  }

  record(ms) {
    if (!(ms >= 0)) return;
    const us = ms * 1000;
    let idx = us <= 1 ? 0 : Math.ceil(Math.log(us) / this.base);
    if (idx >= this.counts.length) idx = this.counts.length - 1;
    this.counts[idx]++;
    this.n++;
    this.sum += ms;
    if (ms > this.max) this.max = ms;
  }

  percentile(p) {
    if (this.n === 0) return null;
    const target = Math.ceil((p / 100) * this.n);
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i];
      if (seen >= target) return Math.min(Math.pow(1.01, i) / 1000, this.max);
    }
    return this.max;
  }

  summary() {
    const r = (v) => (v === null ? null : Math.round(v * 1000) / 1000);
    return {
      n: this.n,
      mean: this.n ? r(this.sum / this.n) : null,
      p50: r(this.percentile(50)),
      p90: r(this.percentile(90)),
      p99: r(this.percentile(99)),
      p999: r(this.percentile(99.9)),
      max: this.n ? r(this.max) : null,
    };
  }
}

// ------------------------------------------------------- growable arrays --

function grow(arr, minLen) {
  if (minLen <= arr.length) return arr;
  let len = Math.max(arr.length * 2, 64);
  while (len < minLen) len *= 2;
  const next = new arr.constructor(len);
  next.set(arr);
  return next;
}

// ---------------------------------------------------------- /proc sampling --

function readProcStat(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces: split after its ')'.
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { utime: Number(f[11]), stime: Number(f[12]) }; // fields 14 and 15
  } catch {
    return null;
  }
}

function readProcStatus(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k) => {
      const m = s.match(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm'));
      return m ? Number(m[1]) : null;
    };
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return null;
  }
}

// Ticks per CPU from /proc/stat: busy = user + nice + system + irq + softirq
// + steal; irq = irq + softirq (kernel work, e.g. loopback packet delivery,
// that is not charged to any process).
function readCpuBusy() {
  try {
    const cpus = [];
    for (const line of fs.readFileSync('/proc/stat', 'utf8').split('\n')) {
      const m = line.match(/^cpu(\d+) (.*)/);
      if (!m) continue;
      const [user, nice, system, , , irq, softirq, steal] = m[2].trim().split(/\s+/).map(Number);
      cpus[Number(m[1])] = { busy: user + nice + system + irq + softirq + steal, irq: irq + softirq };
    }
    return cpus;
  } catch {
    return null;
  }
}

class ServerSampler {
  constructor(pids, clkTck) {
    this.pids = pids;
    this.clkTck = clkTck;
    this.peakRssKb = 0;
    this.timer = null;
  }

  cpuSeconds() {
    let ticks = 0;
    for (const pid of this.pids) {
      const st = readProcStat(pid);
      if (st) ticks += st.utime + st.stime;
    }
    return ticks / this.clkTck;
  }

  rssKb() {
    let total = 0;
    for (const pid of this.pids) {
      const st = readProcStatus(pid);
      if (st && st.rss) total += st.rss;
    }
    if (total > this.peakRssKb) this.peakRssKb = total;
    return total;
  }

  hwmKb() {
    let total = 0;
    for (const pid of this.pids) {
      const st = readProcStatus(pid);
      if (st && st.hwm) total += st.hwm;
    }
    return total;
  }

  start() {
    if (!this.pids.length) return;
    this.rssKb();
    this.timer = setInterval(() => this.rssKb(), 250);
  }

  stop() {
    if (this.timer) clearInterval(this.timer);
  }
}

// --------------------------------------------------------------- the run --

const opts = parseArgs(process.argv.slice(2));
const inflateMode = !opts.deflate ? null : !opts.wsInflate && installSyncInflate() ? 'sync' : 'ws-async';
const sampler = new ServerSampler(opts.pids, opts.clkTck);

const stats = {
  reconnectHistory: 0,
  connectErrors: 0,
  connectErrorReasons: {},
  disconnects: 0,
  deflateNegotiated: 0,
  sent: 0,
  acked: 0,
  nacked: 0,
  nackReasons: {},
  skipped: 0,
  received: 0,
  duplicates: 0,
  unexpected: 0, // deliveries that are not messages this run sent
  idMismatch: 0, // a client saw a different server id for k than the ack said
  idConflicts: 0, // two different messages got the same server id in a room
  outOfOrder: 0, // a client received a lower server id after a higher one
  measuredAcked: 0, // acks received inside the measured window
  measuredDeliveries: 0, // deliveries received inside the measured window
};
const latency = new Histogram(); // send -> delivery at every receiving client
// With several --url: deliveries to a client of the sender's own process, and of another
// (those went through the shared Redis: the listening process decoded and re-delivered them).
const latencyLocal = new Histogram();
const latencyRemote = new Histogram();
const ackLatency = new Histogram(); // send -> ack at the sender
const connectLatency = new Histogram(); // ws open -> welcome
const reconnectLatency = new Histogram(); // the same, in the --reconnect storm

let phase = 'connect'; // connect | warmup | measure | drain | done | reconnect
let measureStart = Infinity;
let measureEnd = Infinity;

// Per-room accounting, indexed by the room-local sequence number k.
class Room {
  constructor(index) {
    this.index = index;
    this.name = `${opts.roomPrefix}${index}`;
    this.ready = 0; // clients currently joined
    this.senders = [];
    this.nextSender = 0;
    this.k = 0; // next sequence number
    this.outstanding = 0; // unacked messages
    this.sizeAtSend = new Uint32Array(64);
    this.recvCount = new Uint32Array(64);
    this.acked = new Uint8Array(64);
    this.serverId = new Float64Array(64); // 0 = not known yet
    this.ids = new Set();
    this.scheduled = 0; // rate mode: messages due so far
  }

  allocate() {
    const k = this.k++;
    this.sizeAtSend = grow(this.sizeAtSend, this.k);
    this.recvCount = grow(this.recvCount, this.k);
    this.acked = grow(this.acked, this.k);
    this.serverId = grow(this.serverId, this.k);
    this.sizeAtSend[k] = this.ready;
    return k;
  }

  noteServerId(k, id) {
    const known = this.serverId[k];
    if (known === 0) {
      this.serverId[k] = id;
      if (this.ids.has(id)) stats.idConflicts++;
      this.ids.add(id);
    } else if (known !== id) {
      stats.idMismatch++;
    }
  }
}

const rooms = Array.from({ length: opts.rooms }, (_, i) => new Room(i));
const roomsByName = new Map(rooms.map((room) => [room.name, room]));
const hogRoom = new Room('hog');
const clients = [];
const hoggers = [];
const hogStats = {
  connectErrors: 0,
  disconnects: 0,
  preloaded: 0,
  sent: 0,
  pages: 0,
  limited: 0,
  errors: 0,
  errorReasons: {},
  measuredPages: 0,
  measuredLimited: 0,
};
const padding = opts.msgSize > 0 ? ' ' + 'x'.repeat(opts.msgSize) : '';

class Client {
  // kind: 'member' (of the measured rooms), 'hog' (asks for history pages) or 'preload'
  // (fills the hoggers' room first). Only members count in the correctness accounting.
  constructor(index, kind = 'member') {
    this.index = index;
    this.kind = kind;
    this.room = kind === 'member' ? rooms[index % opts.rooms] : hogRoom;
    // Every room this client is in, its own first, each with what it received there.
    this.follows = new Map([[this.room, { seen: new Uint8Array(0), lastServerId: 0 }]]);
    if (kind === 'member') {
      // F - 1 more, a stride apart, shifted per client so that rooms mix their members.
      const stride = Math.floor(opts.rooms / opts.follow);
      const shift = Math.floor(index / opts.rooms) % stride;
      for (let j = 1; j < opts.follow; j++) {
        const other = rooms[(this.room.index + j * stride + shift) % opts.rooms];
        this.follows.set(other, { seen: new Uint8Array(0), lastServerId: 0 });
      }
    }
    this.subscribing = 0; // subscribe answers still awaited before the client is ready
    this.counted = []; // the rooms whose `ready` counts this client
    this.subscribeAcks = new Map(); // ack id -> room
    // Spread each room's members over the URLs (matters for the cluster scenario).
    this.urlIndex = Math.floor(index / opts.rooms) % opts.urls.length;
    this.url = opts.urls[this.urlIndex];
    this.name = kind === 'member' ? `u${index}` : `${kind}${index}`;
    this.localAddress = kind === 'hog' ? opts.hogAddress : opts.localAddress;
    this.hogSentAt = 0;
    this.onPreloadAck = null;
    this.ws = null;
    this.state = 'new'; // new | connecting | ready | closed
    this.nextAckId = 0;
    this.pending = new Map(); // ack id -> { k, sentAt }
    this.isSender = false;
    this.onSettled = null;
    this.openedAt = 0;
  }

  connect() {
    return new Promise((resolve) => {
      this.onSettled = resolve;
      this.state = 'connecting';
      this.openedAt = performance.now();
      // Browsers offer permessage-deflate and compress every frame they send.
      const ws = new WebSocket(this.url, {
        perMessageDeflate: opts.deflate ? { threshold: 0 } : false,
        handshakeTimeout: 30000,
        // The frames are parsed as JSON anyway; skipping UTF-8 validation is a
        // measurable share of the load generator's per-delivery cost.
        skipUTF8Validation: true,
        localAddress: this.localAddress || undefined,
      });
      this.ws = ws;
      ws.on('message', (data, isBinary) => {
        if (isBinary) return;
        // Hoggers and the preloader look only at the start of a frame (the ack id and
        // whether it is ok, or the event's name): pages are big, decoding them is not free.
        if (this.kind !== 'member' && data.length > 256) this.onFrame(data.toString('utf8', 0, 64));
        else this.onFrame(data.toString());
      });
      ws.on('open', () => {
        if (ws.extensions && String(ws.extensions).includes('permessage-deflate')) stats.deflateNegotiated++;
      });
      ws.on('error', (err) => this.onFailure(err.message || String(err)));
      ws.on('close', (code) => this.onFailure(`closed ${code}`));
    });
  }

  /** Cut the connection without a goodbye, as a server restart does, forgetting it. */
  drop() {
    const ws = this.ws;
    ws.removeAllListeners();
    ws.on('error', () => {});
    ws.terminate();
    for (const room of this.counted) room.ready--;
    this.counted = [];
    this.subscribeAcks.clear();
    this.subscribing = 0;
    this.pending.clear();
    this.state = 'new';
  }

  settle(ok) {
    if (this.onSettled) {
      const cb = this.onSettled;
      this.onSettled = null;
      cb(ok);
    }
  }

  onFailure(reason) {
    if (this.kind !== 'member') {
      if (this.state === 'connecting') this.settle(false);
      if (this.state === 'ready' && phase !== 'done' && this.kind === 'hog') hogStats.disconnects++;
      if (this.state === 'connecting' || this.state === 'new') hogStats.connectErrors++;
      this.state = 'closed';
      if (this.ws && this.ws.readyState !== WebSocket.CLOSED) this.ws.terminate();
      return;
    }
    if (this.state === 'connecting') {
      stats.connectErrors++;
      const key = String(reason).slice(0, 80);
      stats.connectErrorReasons[key] = (stats.connectErrorReasons[key] || 0) + 1;
      // Welcomed, but a subscription failed: the rooms it is in counted it already.
      for (const room of this.counted) room.ready--;
      this.counted = [];
      this.state = 'closed';
      this.settle(false);
    } else if (this.state === 'ready') {
      if (phase !== 'done') stats.disconnects++;
      this.state = 'closed';
      for (const room of this.counted) room.ready--;
      this.counted = [];
    }
    if (this.ws && this.ws.readyState !== WebSocket.CLOSED) this.ws.terminate();
  }

  onFrame(s) {
    const c0 = s.charCodeAt(0);
    if (c0 === 52 /* '4' Engine.IO message -> Socket.IO packet */) {
      this.onSocketIoPacket(s);
    } else if (c0 === 50 /* '2' ping */) {
      this.ws.send('3');
    } else if (c0 === 48 /* '0' Engine.IO open */) {
      // Socket.IO CONNECT to namespace "/" with the auth payload.
      const auth = { room: this.room.name, name: this.name };
      // Reconnecting: catch up from the last message this client has (chatapp's \`since\`).
      if (phase === 'reconnect') auth.since = this.follows.get(this.room).lastServerId;
      this.ws.send('40' + JSON.stringify(auth));
    } else if (c0 === 49 /* '1' close */) {
      this.onFailure('engine.io close');
    }
  }

  onSocketIoPacket(s) {
    const type = s.charCodeAt(1);
    let i = 2;
    // Namespace "/" is implicit; tolerate an explicit "/," prefix anyway.
    if (s.charCodeAt(i) === 47 /* '/' */) i = s.indexOf(',', i) + 1;
    if (type === 50 /* '2' EVENT */) {
      while (s.charCodeAt(i) >= 48 && s.charCodeAt(i) <= 57) i++; // server-side ack id, unused
      this.onEvent(s, i);
    } else if (type === 51 /* '3' ACK */) {
      let id = 0;
      while (s.charCodeAt(i) >= 48 && s.charCodeAt(i) <= 57) id = id * 10 + (s.charCodeAt(i++) - 48);
      if (this.subscribeAcks.has(id)) this.onSubscribed(id, JSON.parse(s.slice(i)));
      else if (this.kind === 'member') this.onAck(id, JSON.parse(s.slice(i)));
      else this.onHogAck(s, i);
    } else if (type === 52 /* '4' CONNECT_ERROR */) {
      let reason = s.slice(i);
      try {
        reason = JSON.parse(reason).message || reason;
      } catch {
        // keep the raw text
      }
      this.onFailure(`connect_error: ${reason}`);
    } else if (type === 49 /* '1' DISCONNECT */) {
      this.onFailure('server disconnect');
    }
    // '0' CONNECT reply: wait for welcome, which is what makes a client usable.
  }

  onEvent(s, i) {
    if (this.kind !== 'member') {
      // Hoggers and the preloader only need their welcome.
      if (this.state === 'connecting' && s.startsWith('["welcome"', i)) {
        this.state = 'ready';
        this.settle(true);
      }
      return;
    }
    // chatapp tells a room who joined: with --follow that is one event per member for
    // each of the 10 000 joins, which the load generator only needs to skip.
    if (s.startsWith('["presence"', i)) return;
    // A broadcast reaches every member of the room with the exact same frame:
    // parse each distinct frame once (cache) rather than once per receiver.
    let ev = parseCache.get(s);
    if (ev === undefined) {
      ev = parseEvent(s.slice(i));
      if (ev.name === 'message') {
        if (parseCache.size >= 8192) parseCache.clear();
        parseCache.set(s, ev);
      }
    }
    if (ev.name === 'message') this.onMessage(ev);
    else if (ev.name === 'welcome' && this.state === 'connecting') {
      // Nothing was sent while reconnecting: a caught-up welcome has no history to add.
      if (phase === 'reconnect' && !/"history":\[\]/.test(s)) stats.reconnectHistory++;
      this.room.ready++;
      this.counted.push(this.room);
      for (const room of this.follows.keys()) {
        if (room === this.room) continue;
        const ackId = this.nextAckId++;
        this.subscribeAcks.set(ackId, room);
        this.subscribing++;
        this.ws.send(`42${ackId}` + JSON.stringify(['subscribe', { room: room.name }]));
      }
      if (this.subscribing === 0) this.becomeReady();
    }
  }

  onSubscribed(ackId, args) {
    const room = this.subscribeAcks.get(ackId);
    this.subscribeAcks.delete(ackId);
    if (this.state !== 'connecting') return; // failed meanwhile
    const res = Array.isArray(args) ? args[0] : null;
    if (!res || res.ok !== true) {
      this.onFailure(`subscribe refused: ${(res && res.error) || 'malformed ack'}`);
      return;
    }
    room.ready++;
    this.counted.push(room);
    if (--this.subscribing === 0 && this.state === 'connecting') this.becomeReady();
  }

  becomeReady() {
    this.state = 'ready';
    (phase === 'reconnect' ? reconnectLatency : connectLatency).record(performance.now() - this.openedAt);
    this.settle(true);
  }

  onMessage(ev) {
    const now = performance.now();
    const room = ev.room === this.room.name ? this.room : roomsByName.get(ev.room);
    const follow = room && this.follows.get(room);
    if (!follow || ev.k < 0 || ev.k >= room.k) {
      stats.unexpected++;
      return;
    }
    const k = ev.k;
    const byte = k >> 3;
    const bit = 1 << (k & 7);
    if (byte >= follow.seen.length) follow.seen = grow(follow.seen, byte + 1);
    if (follow.seen[byte] & bit) {
      stats.duplicates++;
      return;
    }
    follow.seen[byte] |= bit;
    stats.received++;
    room.recvCount[k]++;
    if (typeof ev.id === 'number') {
      room.noteServerId(k, ev.id);
      if (ev.id < follow.lastServerId) stats.outOfOrder++;
      else follow.lastServerId = ev.id;
    }
    if (ev.t >= measureStart && ev.t < measureEnd) {
      latency.record(now - ev.t);
      if (opts.urls.length > 1) (ev.s === this.urlIndex ? latencyLocal : latencyRemote).record(now - ev.t);
    }
    if (now >= measureStart && now < measureEnd) stats.measuredDeliveries++;
  }

  send() {
    const room = this.room;
    const k = room.allocate();
    const t = performance.now();
    const ackId = this.nextAckId++;
    // With several processes the sender's one is named, to tell local from remote deliveries.
    const origin = opts.urls.length > 1 ? `,"s":${this.urlIndex}` : '';
    const text = `{"k":${k},"t":${t.toFixed(3)}${origin}}${padding}`;
    this.pending.set(ackId, { k, sentAt: t });
    room.outstanding++;
    stats.sent++;
    this.ws.send(`42${ackId}` + JSON.stringify(['message', { text, client_id: `${this.name}-${ackId}` }]));
  }

  // -- hoggers: a history page at a time, at --hog-rate at most, waiting when refused

  hogNext() {
    if (!sending() || this.state !== 'ready') return;
    this.hogSentAt = performance.now();
    hogStats.sent++;
    this.ws.send(`42${this.nextAckId++}` + JSON.stringify(['history', { limit: opts.hogLimit }]));
  }

  onHogAck(s, i) {
    const now = performance.now();
    // A page is big: recognise it without parsing it.
    const ok = s.startsWith('[{"ok":true', i);
    let res = null;
    if (!ok) {
      try {
        res = JSON.parse(s.slice(i))[0];
      } catch {
        res = null;
      }
    }
    if (this.kind === 'preload') {
      this.onPreloadAck(ok, res);
      return;
    }
    let waitMs = 0;
    const measured = now >= measureStart && now < measureEnd;
    if (ok) {
      hogStats.pages++;
      if (measured) hogStats.measuredPages++;
    } else if (res && res.error === 'rate limited') {
      hogStats.limited++;
      if (measured) hogStats.measuredLimited++;
      waitMs = Math.min((Number(res.retry_after) || 0) * 1000, 5000);
    } else {
      hogStats.errors++;
      const key = String((res && res.error) || 'malformed ack').slice(0, 80);
      hogStats.errorReasons[key] = (hogStats.errorReasons[key] || 0) + 1;
    }
    const delay = Math.max(waitMs, 1000 / opts.hogRate - (now - this.hogSentAt), 0);
    if (delay > 0) setTimeout(() => this.hogNext(), delay);
    else this.hogNext();
  }

  onAck(ackId, args) {
    const p = this.pending.get(ackId);
    if (!p) return;
    this.pending.delete(ackId);
    const room = this.room;
    room.outstanding--;
    const now = performance.now();
    const res = Array.isArray(args) ? args[0] : null;
    let retryAfterMs = 0;
    if (res && res.ok === true) {
      stats.acked++;
      room.acked[p.k] = 1;
      if (p.sentAt >= measureStart && p.sentAt < measureEnd) ackLatency.record(now - p.sentAt);
      if (now >= measureStart && now < measureEnd) stats.measuredAcked++;
      if (res.message && typeof res.message.id === 'number') room.noteServerId(p.k, res.message.id);
    } else {
      stats.nacked++;
      const reason = String((res && res.error) || 'malformed ack').slice(0, 80);
      stats.nackReasons[reason] = (stats.nackReasons[reason] || 0) + 1;
      if (res && typeof res.retry_after === 'number') retryAfterMs = Math.min(res.retry_after * 1000, 1000);
    }
    if (opts.mode === 'closed' && this.isSender && sending()) {
      if (retryAfterMs > 0) setTimeout(() => this.state === 'ready' && sending() && this.send(), retryAfterMs);
      else this.send();
    }
  }
}

const parseCache = new Map();

function parseEvent(json) {
  let arr;
  try {
    arr = JSON.parse(json);
  } catch {
    return { name: null };
  }
  const name = Array.isArray(arr) ? arr[0] : null;
  if (name !== 'message') return { name };
  const msg = arr[1] || {};
  let k = -1;
  let t = NaN;
  let s = -1;
  if (typeof msg.text === 'string' && msg.text.startsWith('{"k":')) {
    try {
      const inner = JSON.parse(msg.text.slice(0, msg.text.indexOf('}') + 1));
      k = inner.k;
      t = inner.t;
      s = inner.s;
    } catch {
      // not ours
    }
  }
  return { name, k, t, s, id: msg.id, room: msg.room };
}

function sending() {
  return phase === 'warmup' || phase === 'measure';
}

const LOOP_DELAY_RESOLUTION_MS = 10;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function connectAll() {
  for (let i = 0; i < opts.clients; i++) clients.push(new Client(i));
  await connectEach();
}

// Drops every client at once and connects them all again (phase 'reconnect').
async function reconnectAll() {
  for (const c of clients) if (c.state === 'ready') c.drop();
  await connectEach();
}

async function connectEach() {
  const deadline = performance.now() + opts.connectTimeout * 1000;
  let next = 0;
  let lastLog = performance.now();
  // A fixed number of workers, each connecting one client at a time: bounded
  // concurrency so 10k connections do not all hit the accept queue at once.
  const worker = async () => {
    while (next < clients.length && performance.now() < deadline) {
      const c = clients[next++];
      if (c.state !== 'new') continue; // failed the first time, in the reconnect storm
      await c.connect();
      if (performance.now() - lastLog > 2000) {
        lastLog = performance.now();
        log(`connected ${clients.filter((x) => x.state === 'ready').length}/${opts.clients}`);
      }
    }
  };
  const workers = Array.from({ length: Math.min(opts.connectConcurrency, clients.length) }, worker);
  // The deadline also bounds handshakes that never settle.
  await Promise.race([Promise.all(workers), sleep(opts.connectTimeout * 1000 + 1000)]);
  for (const c of clients) if (c.state === 'connecting' || c.state === 'new') c.onFailure('connect timeout');
}

// Fills the hoggers' room with --preload messages of --preload-size characters, one at a
// time (waiting retry_after when refused), from a connection that then leaves.
async function preloadRoom() {
  const c = new Client(0, 'preload');
  if (!(await c.connect())) throw new Error('the preloading connection failed');
  const text = opts.preloadChar.repeat(opts.preloadSize);
  await new Promise((resolve, reject) => {
    const sendOne = () => c.ws.send(`42${c.nextAckId++}` + JSON.stringify(['message', { text }]));
    c.onPreloadAck = (ok, res) => {
      if (ok) {
        hogStats.preloaded++;
        if (hogStats.preloaded >= opts.preload) resolve();
        else sendOne();
      } else if (res && res.error === 'rate limited') {
        setTimeout(sendOne, Math.min((Number(res.retry_after) || 0) * 1000, 5000));
      } else {
        reject(new Error(`preloading failed: ${JSON.stringify(res)}`));
      }
    };
    sendOne();
  });
  await new Promise((resolve) => {
    c.ws.once('close', resolve);
    c.ws.close();
  });
}

async function connectHoggers() {
  for (let i = 0; i < opts.hoggers; i++) hoggers.push(new Client(i, 'hog'));
  await Promise.all(hoggers.map((h) => h.connect()));
  hogStats.connected = hoggers.filter((h) => h.state === 'ready').length;
}

function startSenders() {
  for (const h of hoggers) if (h.state === 'ready') h.hogNext();
  for (const room of rooms) room.senders = [];
  for (const c of clients) {
    if (c.state === 'ready' && c.room.senders.length < opts.senders) {
      c.isSender = true;
      c.room.senders.push(c);
    }
  }
  if (opts.mode === 'closed') {
    for (const room of rooms) for (const c of room.senders) for (let j = 0; j < opts.inflight; j++) c.send();
    return null;
  }
  if (opts.mode !== 'rate') return null;
  // Open loop: every tick, send what each room is due since the start, round
  // robin over its senders, without waiting for acks. Room i's schedule is
  // offset by i/(rooms*rate) s so the rooms' messages are spread evenly over
  // each period instead of all rooms firing in the same tick.
  const start = performance.now();
  const period = 1 / opts.rate;
  const tick = () => {
    if (!sending()) return;
    const elapsed = (performance.now() - start) / 1000;
    for (let i = 0; i < rooms.length; i++) {
      const room = rooms[i];
      const sinceFirst = elapsed - (i / rooms.length) * period;
      if (sinceFirst < 0) continue;
      const due = Math.floor(sinceFirst * opts.rate) + 1;
      let n = due - room.scheduled;
      room.scheduled = due;
      const live = room.senders.filter((c) => c.state === 'ready');
      for (; n > 0 && live.length; n--) {
        if (room.outstanding >= opts.maxOutstanding) {
          stats.skipped += n;
          break;
        }
        live[room.nextSender++ % live.length].send();
      }
    }
  };
  tick();
  return setInterval(tick, 5);
}

// Messages that are acked but not yet delivered to every member.
function outstandingWork() {
  let pendingAcks = 0;
  let missing = 0;
  for (const room of rooms) {
    pendingAcks += room.outstanding;
    for (let k = 0; k < room.k; k++) {
      if (room.acked[k] && room.recvCount[k] < room.sizeAtSend[k]) missing += room.sizeAtSend[k] - room.recvCount[k];
    }
  }
  return { pendingAcks, missing };
}

function finalAccounting() {
  let expected = 0;
  let lost = 0;
  let receivedUnacked = 0;
  for (const room of rooms) {
    for (let k = 0; k < room.k; k++) {
      if (room.acked[k]) {
        expected += room.sizeAtSend[k];
        if (room.recvCount[k] < room.sizeAtSend[k]) lost += room.sizeAtSend[k] - room.recvCount[k];
      } else {
        receivedUnacked += room.recvCount[k];
      }
    }
  }
  let unacked = 0;
  for (const room of rooms) unacked += room.outstanding;
  return { expected, lost, receivedUnacked, unacked };
}

async function main() {
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const hardLimitS =
    opts.connectTimeout * (opts.reconnect ? 2 : 1) + opts.settle + opts.warmup + opts.duration + opts.drain + 30;
  // Never outlive the planned run, whatever the server does.
  setTimeout(() => finish('hard timeout', 3), hardLimitS * 1000).unref();

  sampler.start();
  if (opts.preload > 0) {
    log(`preloading ${opts.preload} messages of ${opts.preloadSize} characters into ${hogRoom.name}`);
    await preloadRoom();
  }
  const serverCpuStart = sampler.cpuSeconds();
  const rssBeforeKb = sampler.rssKb();

  log(`connecting ${opts.clients} clients to ${opts.urls.join(', ')} (${opts.rooms} rooms, deflate=${opts.deflate})`);
  const connectStart = performance.now();
  const cpuConnect0 = process.cpuUsage();
  const serverCpuConnect0 = sampler.cpuSeconds();
  await connectAll();
  const connectSeconds = (performance.now() - connectStart) / 1000;
  const cpuConnect = process.cpuUsage(cpuConnect0);
  const serverCpuConnect = sampler.cpuSeconds() - serverCpuConnect0;
  const connected = clients.filter((c) => c.state === 'ready').length;
  log(`connected ${connected}/${opts.clients} in ${connectSeconds.toFixed(2)}s, ${stats.connectErrors} errors`);
  if (opts.hoggers > 0) {
    await connectHoggers();
    log(`connected ${hogStats.connected}/${opts.hoggers} hoggers`);
  }

  if (opts.settle > 0) await sleep(opts.settle * 1000);
  const rssConnectedKb = sampler.rssKb();

  const loopDelay = monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS });
  phase = 'warmup';
  const rateTimer = connected > 0 ? startSenders() : null;
  if (opts.warmup > 0) await sleep(opts.warmup * 1000);

  phase = 'measure';
  measureStart = performance.now();
  measureEnd = measureStart + opts.duration * 1000;
  const cpuMeasure0 = process.cpuUsage();
  const serverCpuMeasure0 = sampler.cpuSeconds();
  const busy0 = readCpuBusy();
  loopDelay.enable();
  log(`measuring for ${opts.duration}s`);
  await sleep(opts.duration * 1000);
  const measuredSeconds = (performance.now() - measureStart) / 1000;
  const cpuMeasure = process.cpuUsage(cpuMeasure0);
  const serverCpuMeasure = sampler.cpuSeconds() - serverCpuMeasure0;
  const busy1 = readCpuBusy();
  loopDelay.disable();
  const rssMeasureEndKb = sampler.rssKb();

  phase = 'drain';
  if (rateTimer) clearInterval(rateTimer);
  const drainDeadline = performance.now() + opts.drain * 1000;
  let work = outstandingWork();
  while ((work.pendingAcks > 0 || work.missing > 0) && performance.now() < drainDeadline) {
    await sleep(50);
    work = outstandingWork();
  }
  phase = 'done';

  const acct = finalAccounting();
  const cpuAll = process.cpuUsage(cpu0);
  const wallSeconds = (performance.now() - t0) / 1000;
  const sec = (us) => Math.round(us / 1000) / 1000;
  const r3 = (v) => Math.round(v * 1000) / 1000;
  const result = {
    label: opts.label || undefined,
    config: {
      urls: opts.urls,
      clients: opts.clients,
      rooms: opts.rooms,
      follow: opts.follow,
      senders_per_room: opts.senders,
      mode: opts.mode,
      rate_per_room: opts.mode === 'rate' ? opts.rate : undefined,
      inflight: opts.mode === 'closed' ? opts.inflight : undefined,
      duration_s: opts.duration,
      warmup_s: opts.warmup,
      deflate: opts.deflate,
      inflate: inflateMode || undefined,
      msg_size: opts.msgSize,
    },
    connected,
    connect_errors: stats.connectErrors,
    connect_error_reasons: stats.connectErrorReasons,
    connect_s: r3(connectSeconds),
    connect_rate: r3(connected / Math.max(connectSeconds, 1e-9)),
    connect_ms: connectLatency.summary(),
    deflate_negotiated: stats.deflateNegotiated,
    disconnects: stats.disconnects,
    sent: stats.sent,
    acked: stats.acked,
    nacked: stats.nacked,
    nack_reasons: stats.nackReasons,
    unacked: acct.unacked,
    skipped: stats.skipped,
    expected_deliveries: acct.expected,
    received: stats.received,
    lost: acct.lost,
    duplicates: stats.duplicates,
    unexpected: stats.unexpected,
    received_unacked: acct.receivedUnacked,
    id_mismatch: stats.idMismatch,
    id_conflicts: stats.idConflicts,
    out_of_order: stats.outOfOrder,
    measured_s: r3(measuredSeconds),
    msgs_per_s: r3(stats.measuredAcked / measuredSeconds),
    deliveries_per_s: r3(stats.measuredDeliveries / measuredSeconds),
    latency_ms: latency.summary(),
    ...(opts.urls.length > 1
      ? { latency_local_ms: latencyLocal.summary(), latency_remote_ms: latencyRemote.summary() }
      : {}),
    ack_latency_ms: ackLatency.summary(),
    loadgen: {
      cpu_s: sec(cpuAll.user + cpuAll.system),
      cpu_s_measure: sec(cpuMeasure.user + cpuMeasure.system),
      // On loopback about half of the cost is kernel time (socket reads).
      cpu_sys_s_measure: sec(cpuMeasure.system),
      // Same while connecting: tells whether connect_rate was limited here.
      cpu_util_connect: r3((cpuConnect.user + cpuConnect.system) / 1e6 / Math.max(connectSeconds, 1e-9)),
      // Fraction of one core used while measuring: near 1.0 means the load
      // generator, not the server, may be the limit.
      cpu_util_measure: r3((cpuMeasure.user + cpuMeasure.system) / 1e6 / measuredSeconds),
      // How late the load generator's timers fire (the sampling interval is
      // subtracted): large values mean sends and receive timestamps are late.
      event_loop_delay_ms: {
        p99: r3(Math.max(0, loopDelay.percentile(99) / 1e6 - LOOP_DELAY_RESOLUTION_MS)),
        max: r3(Math.max(0, loopDelay.max / 1e6 - LOOP_DELAY_RESOLUTION_MS)),
      },
      rss_kb: Math.round(process.memoryUsage().rss / 1024),
      wall_s: r3(wallSeconds),
    },
  };
  if (opts.reconnect) {
    phase = 'reconnect';
    const before = clients.filter((c) => c.state === 'ready').length;
    log(`dropping ${before} connections and reconnecting them all`);
    const start = performance.now();
    const serverCpu0 = sampler.cpuSeconds();
    const cpu0r = process.cpuUsage();
    await reconnectAll();
    const seconds = (performance.now() - start) / 1000;
    const cpu = process.cpuUsage(cpu0r);
    const serverCpu = sampler.cpuSeconds() - serverCpu0;
    const back = clients.filter((c) => c.state === 'ready').length;
    log(`reconnected ${back}/${before} in ${seconds.toFixed(2)}s`);
    result.reconnect = {
      dropped: before,
      reconnected: back,
      s: r3(seconds),
      rate: r3(back / Math.max(seconds, 1e-9)),
      ms: reconnectLatency.summary(),
      // Welcomes that brought history although nothing was sent: a catch-up not exact.
      wrong_history: stats.reconnectHistory,
      server_cpu_s: r3(serverCpu),
      server_cpu_util: r3(serverCpu / Math.max(seconds, 1e-9)),
      loadgen_cpu_util: r3((cpu.user + cpu.system) / 1e6 / Math.max(seconds, 1e-9)),
    };
    phase = 'done';
  }
  if (busy0 && busy1) {
    const util = (key) => busy1.map((c, i) => (c[key] - busy0[i][key]) / opts.clkTck / measuredSeconds);
    const sum = (xs) => xs.reduce((a, b) => a + b, 0);
    const busy = util('busy');
    const irq = sum(util('irq'));
    const mine = (cpuMeasure.user + cpuMeasure.system) / 1e6 / measuredSeconds + serverCpuMeasure / measuredSeconds;
    result.machine = {
      cpu_busy: busy.map(r3), // fraction of each CPU busy during the window
      irq_util: r3(irq), // cores' worth of interrupt/softirq work (grows with loopback traffic)
      // Cores' worth of CPU used by other processes than the server(s) and
      // this one: if large, another workload competed with the benchmark.
      other_cpu_util: r3(Math.max(0, sum(busy) - irq - mine)),
    };
  }
  if (opts.hoggers > 0 || opts.preload > 0) {
    result.hog = {
      hoggers: opts.hoggers,
      connected: hogStats.connected || 0,
      connect_errors: hogStats.connectErrors,
      disconnects: hogStats.disconnects,
      preloaded: hogStats.preloaded,
      limit: opts.hogLimit,
      sent: hogStats.sent,
      pages: hogStats.pages,
      limited: hogStats.limited,
      errors: hogStats.errors,
      error_reasons: hogStats.errorReasons,
      // Pages answered, and requests refused as rate limited, during the measured window.
      pages_per_s: r3(hogStats.measuredPages / measuredSeconds),
      limited_per_s: r3(hogStats.measuredLimited / measuredSeconds),
    };
  }
  if (opts.pids.length) {
    const connectedDelta = rssConnectedKb - rssBeforeKb;
    result.server = {
      pids: opts.pids,
      cpu_s: r3(sampler.cpuSeconds() - serverCpuStart),
      cpu_s_measure: r3(serverCpuMeasure),
      cpu_util_measure: r3(serverCpuMeasure / measuredSeconds),
      cpu_util_connect: r3(serverCpuConnect / Math.max(connectSeconds, 1e-9)),
      rss_before_kb: rssBeforeKb,
      rss_connected_kb: rssConnectedKb,
      rss_end_kb: rssMeasureEndKb,
      rss_peak_kb: sampler.peakRssKb,
      hwm_kb: sampler.hwmKb(), // kernel's peak RSS over the server's lifetime
      mem_per_conn_bytes: connected ? Math.round((connectedDelta * 1024) / connected) : null,
    };
  }
  finalResult = result;
  finish(null, 0);
}

let finalResult = null;
let finished = false;

function correctnessProblems(r) {
  const problems = [];
  if (r.connected !== opts.clients) problems.push(`connected ${r.connected} != clients ${opts.clients}`);
  if (r.acked !== r.sent) problems.push(`acked ${r.acked} != sent ${r.sent}`);
  if (r.lost !== 0) problems.push(`lost ${r.lost}`);
  if (r.duplicates !== 0) problems.push(`duplicates ${r.duplicates}`);
  if (r.disconnects !== 0) problems.push(`disconnects ${r.disconnects}`);
  if (r.reconnect && r.reconnect.reconnected !== r.reconnect.dropped) {
    problems.push(`reconnected ${r.reconnect.reconnected} != dropped ${r.reconnect.dropped}`);
  }
  if (r.reconnect && r.reconnect.wrong_history !== 0) {
    problems.push(`${r.reconnect.wrong_history} welcomes on reconnecting brought history`);
  }
  return problems;
}

function finish(error, code) {
  if (finished) return;
  finished = true;
  sampler.stop();
  const result = finalResult || { error, connected: clients.filter((c) => c.state === 'ready').length, sent: stats.sent };
  if (error) result.error = error;
  let exitCode = code;
  if (opts.assertCorrect && !error) {
    const problems = correctnessProblems(result);
    result.correct = problems.length === 0;
    if (problems.length) {
      result.problems = problems;
      exitCode = 1;
    }
  }
  for (const c of [...clients, ...hoggers]) if (c.ws) c.ws.terminate();
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(exitCode));
}

main().catch((err) => {
  log(err.stack || String(err));
  finish(String(err), 1);
});
