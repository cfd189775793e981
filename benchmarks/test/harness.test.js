// Self-tests of the benchmark harness against the reference server:
//   npm test --prefix benchmarks
// They check that loadgen's correctness accounting passes a correct server and
// catches a faulty one, in each send mode and with permessage-deflate.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert');
const { spawn, execFile } = require('node:child_process');
const path = require('node:path');

const DIR = path.join(__dirname, '..');

function startServer(args = []) {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [path.join(DIR, 'reference_server.js'), '--port', '0', ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const timer = setTimeout(() => reject(new Error('reference server did not start')), 10000);
    proc.stdout.on('data', (chunk) => {
      const m = String(chunk).match(/http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, url: m[0] });
      }
    });
    proc.on('exit', (code) => reject(new Error(`reference server exited ${code}`)));
  });
}

function loadgen(args) {
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(DIR, 'loadgen.js'), ...args], { timeout: 60000 }, (err, stdout) => {
      const line = stdout.trim().split('\n').pop();
      resolve({ code: err ? err.code : 0, result: JSON.parse(line) });
    });
  });
}

const SHORT = ['--clients', '12', '--rooms', '3', '--senders', '2', '--duration', '1', '--warmup', '0.5', '--assert-correct'];

async function withServer(serverArgs, fn) {
  const { proc, url } = await startServer(serverArgs);
  try {
    return await fn(url, proc.pid);
  } finally {
    proc.kill('SIGTERM');
  }
}

test('closed loop against a correct server: everything delivered once', async () => {
  await withServer([], async (url, pid) => {
    const { code, result } = await loadgen(['--url', url, '--server-pid', String(pid), ...SHORT]);
    assert.strictEqual(code, 0, JSON.stringify(result.problems));
    assert.strictEqual(result.connected, 12);
    assert.ok(result.sent > 0);
    assert.strictEqual(result.acked, result.sent);
    assert.strictEqual(result.expected_deliveries, result.acked * 4); // 4 clients per room
    assert.strictEqual(result.received, result.expected_deliveries);
    assert.strictEqual(result.lost, 0);
    assert.strictEqual(result.duplicates, 0);
    assert.strictEqual(result.id_conflicts, 0);
    assert.ok(result.latency_ms.p50 > 0);
    assert.ok(result.server.cpu_s > 0 && result.server.rss_peak_kb > 0);
  });
});

test('rate mode sends about rate x rooms x time', async () => {
  await withServer([], async (url) => {
    const args = ['--url', url, ...SHORT, '--mode', 'rate', '--rate', '20', '--duration', '2', '--warmup', '0'];
    const { code, result } = await loadgen(args);
    assert.strictEqual(code, 0, JSON.stringify(result.problems));
    // 3 rooms x 20/s x 2 s = 120, give or take the first tick of each room
    assert.ok(result.sent >= 110 && result.sent <= 130, `sent ${result.sent}`);
    assert.strictEqual(result.lost, 0);
  });
});

test('several URLs: each delivery counted as local or remote to the sender', async () => {
  await withServer([], async (url) => {
    // One server named twice stands for two processes: a room's members alternate
    // between the two, and so do its two senders.
    const { code, result } = await loadgen(['--url', `${url},${url}`, ...SHORT]);
    assert.strictEqual(code, 0, JSON.stringify(result.problems));
    const local = result.latency_local_ms.n;
    const remote = result.latency_remote_ms.n;
    assert.ok(local > 0 && remote > 0, `local ${local}, remote ${remote}`);
    assert.strictEqual(local + remote, result.latency_ms.n);
  });
});

test('deflate negotiated and inflated correctly', async () => {
  await withServer(['--deflate=0'], async (url) => {
    const { code, result } = await loadgen(['--url', url, ...SHORT, '--deflate']);
    assert.strictEqual(code, 0, JSON.stringify(result.problems));
    assert.strictEqual(result.deflate_negotiated, 12);
    assert.strictEqual(result.config.inflate, 'sync');
    assert.ok(result.received > 0 && result.unexpected === 0);
  });
});

test('--follow: each client in several rooms, every message delivered to all followers of its room once', async () => {
  await withServer([], async (url) => {
    const args = ['--url', url, ...SHORT, '--clients', '12', '--rooms', '4', '--follow', '2', '--senders', '1'];
    const { code, result } = await loadgen(args);
    assert.strictEqual(code, 0, JSON.stringify(result.problems));
    assert.strictEqual(result.config.follow, 2);
    // 12 clients x 2 rooms over 4 rooms: 6 followers per room, 3 of them by subscribing.
    assert.strictEqual(result.expected_deliveries, result.acked * 6);
    assert.strictEqual(result.received, result.expected_deliveries);
    assert.strictEqual(result.unexpected, 0);
  });
});

test('--follow against a server that ignores subscriptions: losses in subscribed rooms are caught', async () => {
  await withServer(['--inject-faults=subscribe'], async (url) => {
    const args = ['--url', url, ...SHORT, '--rooms', '4', '--follow', '2', '--senders', '1', '--drain', '1'];
    const { code, result } = await loadgen(args);
    assert.strictEqual(code, 1);
    assert.strictEqual(result.lost, result.acked * 3);
  });
});

test('a faulty server is caught: lost and duplicated deliveries', async () => {
  await withServer(['--inject-faults'], async (url) => {
    // Short drain: the missing deliveries never come.
    const { code, result } = await loadgen(['--url', url, ...SHORT, '--drain', '1']);
    assert.strictEqual(code, 1);
    assert.strictEqual(result.correct, false);
    const faulty = Math.floor(result.acked / 10); // roughly every 10th id per room
    assert.ok(result.lost > 0 && result.lost >= faulty * 0.5, `lost ${result.lost}`);
    assert.ok(result.duplicates > 0 && result.duplicates >= faulty * 0.5 * 3, `duplicates ${result.duplicates}`);
  });
});

test('hoggers ask for pages at their rate, from their own address, apart from the members', async () => {
  await withServer([], async (url) => {
    const args = [
      '--url', url, '--clients', '4', '--rooms', '1', '--senders', '1', '--mode', 'rate', '--rate', '10',
      '--duration', '2', '--warmup', '0.5', '--assert-correct',
      '--local-address', '127.0.0.2', '--hoggers', '3', '--hog-rate', '10', '--hog-limit', '20',
      '--preload', '5', '--preload-size', '2000',
    ];
    const { code, result } = await loadgen(args);
    assert.strictEqual(code, 0, JSON.stringify(result.problems));
    assert.strictEqual(result.connected, 4);
    assert.strictEqual(result.unexpected, 0); // nothing from the hoggers' room reached the members
    const hog = result.hog;
    assert.strictEqual(hog.connected, 3);
    assert.strictEqual(hog.preloaded, 5);
    assert.strictEqual(hog.errors, 0);
    assert.ok(hog.pages >= hog.sent - 3); // each hogger has at most one request in flight
    // Paced at 10 pages/s each: over a 2 s window a hogger completes at most 10 x 2 + 1 (the page
    // in flight when the window opens), so 3 x 21 / 2 = 31.5/s, and a timer that fires a
    // millisecond early can add a little. Unpaced hoggers would ask for hundreds per second; a
    // busy machine may delay them, hence the low floor.
    assert.ok(hog.pages_per_s > 15 && hog.pages_per_s <= 36, `pages/s ${hog.pages_per_s}`);
  });
});
