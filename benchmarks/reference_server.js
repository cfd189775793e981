#!/usr/bin/env node
// Node socket.io 4.8 reference server for the chatapp benchmarks.
//
// It speaks the same protocol subset as chatapp (Socket.IO v5, namespace "/",
// path "/socket.io/") so that loadgen.js can drive both with identical traffic
// and run.py can report chatapp/node ratios. It is deliberately minimal: no
// persistence, no history (welcome.history is always empty, and a `history`
// request gets an empty page), no rate limit.
//
// Usage: node reference_server.js [--port 0] [--host 127.0.0.1] [--deflate[=THRESHOLD]]
//        (--inject-faults is for the harness's own tests only)
// Prints "listening on http://127.0.0.1:PORT" on stdout once listening.
'use strict';

const http = require('http');
const { Server } = require('socket.io');

const ROOM_RE = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const MAX_TEXT = 2000;

function parseArgs(argv) {
  const opts = { port: 0, host: '127.0.0.1', deflate: null, injectFaults: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [key, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, null];
    const next = () => (inline !== null ? inline : argv[++i]);
    if (key === '--port') opts.port = Number(next());
    else if (key === '--host') opts.host = next();
    // socket.io leaves permessage-deflate off by default. --deflate turns it on;
    // the optional value is ws's threshold (bytes below which frames are sent
    // uncompressed, ws default 1024; 0 compresses every frame).
    else if (key === '--deflate') opts.deflate = inline !== null ? Number(inline) : 1024;
    // Test-only: break delivery on purpose so the harness's own tests can check
    // that loadgen really detects lost and duplicated deliveries.
    // `--inject-faults=subscribe`: subscriptions are answered but not joined.
    else if (key === '--inject-faults') opts.injectFaults = inline === 'subscribe' ? 'subscribe' : true;
    else if (key === '--help' || key === '-h') {
      process.stdout.write('usage: node reference_server.js [--port N] [--host H] [--deflate[=THRESHOLD]] [--inject-faults[=subscribe]]\n');
      process.exit(0);
    } else {
      process.stderr.write(`unknown argument: ${a}\n`);
      process.exit(2);
    }
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    process.stderr.write('--port must be an integer in 0..65535\n');
    process.exit(2);
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const httpServer = http.createServer((req, res) => {
  res.writeHead(404).end();
});
const io = new Server(httpServer, {
  path: '/socket.io/',
  perMessageDeflate: opts.deflate === null ? false : { threshold: opts.deflate },
});

// room name -> { nextId, members: Map<socket id, user name> }
const rooms = new Map();

function roomState(name) {
  let r = rooms.get(name);
  if (!r) {
    r = { nextId: 1, members: new Map() };
    rooms.set(name, r);
  }
  return r;
}

// Validate the handshake auth before the connection is accepted, as chatapp does.
io.use((socket, next) => {
  const auth = socket.handshake.auth || {};
  const room = auth.room === undefined ? 'lobby' : auth.room;
  if (typeof room !== 'string' || !ROOM_RE.test(room)) return next(new Error('invalid room'));
  let name = auth.name === undefined ? `guest-${socket.id.slice(0, 6)}` : auth.name;
  if (typeof name !== 'string') return next(new Error('invalid name'));
  name = name.trim();
  if (name.length < 1 || name.length > 32) return next(new Error('invalid name'));
  socket.data.room = room;
  socket.data.name = name;
  next();
});

io.on('connection', (socket) => {
  const { room, name } = socket.data;
  const state = roomState(room);
  state.members.set(socket.id, name);
  socket.join(room);
  socket.emit('welcome', {
    room,
    name,
    users: Array.from(new Set(state.members.values())),
    history: [],
    has_more: false,
  });

  socket.on('message', (payload, ack) => {
    const reply = typeof ack === 'function' ? ack : () => {};
    const text = payload && typeof payload.text === 'string' ? payload.text.trim() : '';
    if (!text) return reply({ ok: false, error: 'empty message' });
    if (text.length > MAX_TEXT) return reply({ ok: false, error: 'message too long' });
    const message = { id: state.nextId++, room, name, text, ts: Date.now() };
    if (opts.injectFaults === true && message.id % 10 === 0) {
      // Every 10th message: not delivered to the sender, delivered twice to the rest.
      io.to(room).except(socket.id).emit('message', message);
      io.to(room).except(socket.id).emit('message', message);
    } else {
      io.to(room).emit('message', message);
    }
    reply({ ok: true, message });
  });

  // One socket in several rooms, as chatapp's `subscribe` (loadgen --follow): the
  // socket joins the room and is answered like a welcome.
  const followed = new Set([room]);
  socket.on('subscribe', (payload, ack) => {
    const reply = typeof ack === 'function' ? ack : () => {};
    const other = payload && payload.room;
    if (typeof other !== 'string' || !ROOM_RE.test(other)) return reply({ ok: false, error: 'invalid room' });
    if (followed.has(other)) return reply({ ok: false, error: `already in #${other}` });
    followed.add(other);
    const otherState = roomState(other);
    otherState.members.set(socket.id, name);
    if (opts.injectFaults !== 'subscribe') socket.join(other);
    reply({ ok: true, room: other, users: Array.from(new Set(otherState.members.values())), history: [], has_more: false });
  });

  // Nothing is kept: every page is empty (enough for loadgen's --hoggers).
  socket.on('history', (payload, ack) => {
    if (typeof ack === 'function') ack({ ok: true, messages: [], has_more: false });
  });

  socket.on('disconnect', () => {
    // Keep the room (and its id counter) so ids keep increasing, like chatapp's
    // persisted rooms; only the membership is dropped.
    for (const other of followed) roomState(other).members.delete(socket.id);
  });
});

httpServer.listen(opts.port, opts.host, () => {
  const { port } = httpServer.address();
  // run.py waits for this exact URL form on stdout.
  process.stdout.write(`reference server listening on http://${opts.host}:${port}\n`);
});

function shutdown() {
  io.close();
  httpServer.close(() => process.exit(0));
  // Do not hang on lingering keep-alive sockets.
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
