// The OpenSSH-by-hand pipeline's live check in bench/bench_rtt.py: one socket.io-client
// connection (polling handshake, then the upgrade, as the client does by default), exit 0 once
// it is on WebSocket, 1 on a connect error or after --timeout ms.
//
// Run: NODE_PATH=tests/node/node_modules node bench/node_probe.js URL [TIMEOUT_MS]
'use strict';

const { io } = require('socket.io-client');

const url = process.argv[2];
const timeout = Number(process.argv[3] || 5000);
if (!url) {
  process.stderr.write('usage: node_probe.js URL [TIMEOUT_MS]\n');
  process.exit(2);
}
const socket = io(url, { reconnection: false, timeout });
const timer = setTimeout(() => {
  process.stderr.write('no WebSocket connection in time\n');
  process.exit(1);
}, timeout);
function done() {
  if (socket.connected && socket.io.engine.transport.name === 'websocket') {
    clearTimeout(timer);
    socket.disconnect();
    process.exit(0);
  }
}
socket.on('connect', done);
socket.io.on('open', () => socket.io.engine.on('upgrade', done));
socket.on('connect_error', (err) => {
  process.stderr.write(`connect_error: ${err.message}\n`);
  process.exit(1);
});
