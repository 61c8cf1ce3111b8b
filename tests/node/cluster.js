// A Socket.IO 4.x server run as a Node `cluster` (issue 12, class 4): the primary forks
// --workers processes that share one port, WITHOUT @socket.io/sticky — so requests of one
// Engine.IO session reach different workers ("Session ID unknown"), whatever the proxy does.
// Options: port (required: workers share it), host, workers. Prints "READY <port>" once every
// worker listens; each worker answers GET /__id with its pid.
'use strict';

const cluster = require('cluster');
const http = require('http');
const { Server } = require('socket.io');
const { parseArgs, exitOnSignals } = require('./args');

const opts = parseArgs(process.argv.slice(2), { port: '0', host: '127.0.0.1', workers: '4' });

if (cluster.isPrimary) {
  let ready = 0;
  const count = Number(opts.workers);
  for (let i = 0; i < count; i++) {
    cluster.fork().on('message', (msg) => {
      if (msg === 'listening' && ++ready === count) process.stdout.write('READY ' + opts.port + '\n');
    });
  }
  const stop = () => {
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  const httpServer = http.createServer((req, res) => {
    res.writeHead(req.url === '/__id' ? 200 : 404, { 'Content-Type': 'text/plain' });
    res.end(req.url === '/__id' ? String(process.pid) : 'not found');
  });
  const io = new Server(httpServer, { serveClient: false });
  io.on('connection', (socket) => socket.emit('hello', { id: String(process.pid) }));
  httpServer.listen(Number(opts.port), opts.host, () => process.send('listening'));
  exitOnSignals(httpServer);
}
