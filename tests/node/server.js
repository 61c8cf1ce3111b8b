// A real Socket.IO 4.x server for sockwizard's tests (started by tests/rig.py NodeBackend).
//
// Options (CLI `--name=value` or env SW_NAME): port (0 = any free port), host, path,
// ping-interval and ping-timeout (milliseconds, like the Node server's own options), id (a
// string identifying this backend, echoed to clients so tests can tell backends apart),
// backlog, allow-eio3 ("1" to accept EIO=3 clients), cors-origin ("" = no CORS headers).
//
// Behaviour: on connection emits "hello" {id}; "echo" with an ack answers {...data, server: id};
// "disconnect-me" makes the server close the socket ("io server disconnect" on the client).
// GET /__id answers the id as text (a marker for sticky-session and reload tests); any other
// non-Socket.IO request gets 404, like a bare Socket.IO server. Prints "READY <port>" once
// listening, then one line per event: "CONNECT <sid> <transport>", "UPGRADE <sid> <transport>",
// "DISCONNECT <sid> <reason>", so tests can read the server's side of a drop.
'use strict';

const http = require('http');
const { Server } = require('socket.io');
const { parseArgs, listen, exitOnSignals } = require('./args');

const opts = parseArgs(process.argv.slice(2), {
  port: '0',
  host: '127.0.0.1',
  path: '/socket.io/',
  'ping-interval': '25000',
  'ping-timeout': '20000',
  id: 'a',
  backlog: '4096',
  'allow-eio3': '0',
  'cors-origin': '',
});

const httpServer = http.createServer((req, res) => {
  if (req.url === '/__id') {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end(opts.id);
    return;
  }
  res.writeHead(404, { 'Content-Type': 'text/plain' });
  res.end('not found');
});

const serverOpts = {
  path: opts.path,
  pingInterval: Number(opts['ping-interval']),
  pingTimeout: Number(opts['ping-timeout']),
  allowEIO3: opts['allow-eio3'] === '1',
  serveClient: false,
};
if (opts['cors-origin']) serverOpts.cors = { origin: opts['cors-origin'] };
const io = new Server(httpServer, serverOpts);

function log(line) {
  process.stdout.write(line + '\n');
}

io.on('connection', (socket) => {
  const sid = socket.conn.id;
  log('CONNECT ' + sid + ' ' + socket.conn.transport.name);
  socket.conn.on('upgrade', (transport) => log('UPGRADE ' + sid + ' ' + transport.name));
  socket.on('disconnect', (reason) => log('DISCONNECT ' + sid + ' ' + reason.replace(/ /g, '_')));
  socket.emit('hello', { id: opts.id });
  socket.on('echo', (data, ack) => {
    const base = data !== null && typeof data === 'object' && !Array.isArray(data) ? data : { data };
    if (typeof ack === 'function') ack(Object.assign({}, base, { server: opts.id }));
  });
  socket.on('disconnect-me', () => socket.disconnect(true));
});

listen(httpServer, opts);
exitOnSignals(httpServer);
