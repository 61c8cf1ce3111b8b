// A real Socket.IO 2.x server (Engine.IO protocol 3) for sockwizard's tests: the "old server"
// case where a v4 client gets "Unsupported protocol version" or silent drops. Same options and
// behaviour as server.js (see there), on the socket.io@2.5.0 package installed as socket.io-v2.
'use strict';

const http = require('http');
const createServer = require('socket.io-v2');
const { parseArgs, listen, exitOnSignals } = require('./args');

const opts = parseArgs(process.argv.slice(2), {
  port: '0',
  host: '127.0.0.1',
  path: '/socket.io/',
  'ping-interval': '25000',
  'ping-timeout': '20000',
  id: 'a',
  backlog: '4096',
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

const io = createServer(httpServer, {
  path: opts.path,
  pingInterval: Number(opts['ping-interval']),
  pingTimeout: Number(opts['ping-timeout']),
  serveClient: false,
});

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
