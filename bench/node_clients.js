// The anchor for bench/bench_load.py: N plain Node socket.io-client connections opened at once,
// WebSocket transport only (as `sockwizard probe --clients N` does), reporting the same numbers
// as the probe's JSON "clients" section: connect latency p50/p95/p99/max (from io() to the
// "connect" event, i.e. TCP + upgrade + open packet + namespace connect), how many connected,
// why the others failed, the time until every client had an outcome, this process's CPU during
// that stage and its peak RSS.
//
// Run: NODE_PATH=tests/node/node_modules node bench/node_clients.js --url=http://127.0.0.1:8080
//        --clients=1000 [--path=/socket.io/] [--timeout=20000]
// Prints one JSON object on stdout and exits 0 (even with failures: they are data).
'use strict';

const { io } = require('socket.io-client');

function parseArgs(argv) {
  const opts = { url: '', path: '/socket.io/', clients: '100', timeout: '20000' };
  for (const arg of argv) {
    const m = /^--([^=]+)=(.*)$/.exec(arg);
    if (!m || !(m[1] in opts)) {
      process.stderr.write(`unknown argument ${arg}\n`);
      process.exit(2);
    }
    opts[m[1]] = m[2];
  }
  if (!opts.url) {
    process.stderr.write('--url is required\n');
    process.exit(2);
  }
  return opts;
}

// Nearest rank, like wizard.probe.percentile: every reported value was measured.
function percentile(sorted, pct) {
  if (sorted.length === 0) return null;
  const rank = Math.max(1, Math.ceil((sorted.length * pct) / 100));
  return sorted[rank - 1];
}

const round1 = (v) => (v === null ? null : Math.round(v * 10) / 10);

function main() {
  const opts = parseArgs(process.argv.slice(2));
  const count = Number(opts.clients);
  const timeout = Number(opts.timeout);
  const sockets = [];
  const latencies = [];
  const errors = {};
  let pending = count;
  let dropped = 0;
  const cpuBefore = process.cpuUsage();
  const began = process.hrtime.bigint();

  function settle() {
    pending -= 1;
    if (pending === 0) finish();
  }

  function finish() {
    const doneS = Number(process.hrtime.bigint() - began) / 1e9;
    const cpu = process.cpuUsage(cpuBefore);
    const sorted = latencies.slice().sort((a, b) => a - b);
    const report = {
      requested: count,
      connected: sorted.length,
      failed: count - sorted.length,
      p50_ms: round1(percentile(sorted, 50)),
      p95_ms: round1(percentile(sorted, 95)),
      p99_ms: round1(percentile(sorted, 99)),
      max_ms: round1(sorted.length ? sorted[sorted.length - 1] : null),
      all_done_s: Math.round(doneS * 1000) / 1000,
      dropped_while_waiting: dropped,
      errors,
      cpu_s: Math.round(((cpu.user + cpu.system) / 1e6) * 1000) / 1000,
      max_rss_mb: Math.round((process.resourceUsage().maxRSS / 1024) * 10) / 10, // KiB
    };
    for (const s of sockets) s.disconnect();
    process.stdout.write(JSON.stringify(report) + '\n', () => process.exit(0));
  }

  for (let i = 0; i < count; i += 1) {
    const started = process.hrtime.bigint();
    let done = false;
    const socket = io(opts.url, {
      path: opts.path,
      transports: ['websocket'],
      forceNew: true, // one Engine.IO connection per client, not one shared Manager
      reconnection: false,
      timeout,
    });
    sockets.push(socket);
    socket.on('connect', () => {
      if (done) return;
      done = true;
      latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
      socket.on('disconnect', () => {
        if (pending > 0) dropped += 1;
      });
      settle();
    });
    socket.on('connect_error', (err) => {
      if (done) return;
      done = true;
      const what = err && err.message ? err.message : String(err);
      errors[what] = (errors[what] || 0) + 1;
      settle();
    });
  }
  if (count === 0) finish();
}

main();
