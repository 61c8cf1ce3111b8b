// Servers that are NOT Socket.IO, for the probe's bad-input tests (started by tests/rig.py
// PlainServer). Options: port (0 = any), host, backlog, mode, status, body.
//   mode=http    every request answers `status` (default 200) with `body` as text/html
//   mode=ws      a plain WebSocket echo server on every path (the `ws` package); plain HTTP
//                requests get 426 Upgrade Required
//   mode=silent  accepts TCP connections and never answers (a hung upstream)
//   mode=close   accepts TCP connections and closes them at once (a crashing upstream)
// Prints "READY <port>" when listening.
'use strict';

const http = require('http');
const net = require('net');
const { parseArgs, listen, exitOnSignals } = require('./args');

const opts = parseArgs(process.argv.slice(2), {
  port: '0',
  host: '127.0.0.1',
  backlog: '4096',
  mode: 'http',
  status: '200',
  body: '<!doctype html><title>plain</title><h1>Not a Socket.IO server</h1>\n',
});

let server;
if (opts.mode === 'http') {
  server = http.createServer((req, res) => {
    res.writeHead(Number(opts.status), { 'Content-Type': 'text/html' });
    res.end(opts.body);
  });
} else if (opts.mode === 'ws') {
  const { WebSocketServer } = require('ws');
  server = http.createServer((req, res) => {
    res.writeHead(426, { 'Content-Type': 'text/plain', Upgrade: 'websocket' });
    res.end('Upgrade Required');
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
} else if (opts.mode === 'silent') {
  const held = [];
  server = net.createServer((sock) => {
    held.push(sock);
    sock.on('error', () => {});
  });
} else if (opts.mode === 'close') {
  server = net.createServer((sock) => sock.destroy());
} else {
  process.stderr.write('unknown mode: ' + opts.mode + '\n');
  process.exit(2);
}

listen(server, opts);
exitOnSignals(server);
