// Keeps `node <script>` running for tests/rig.py's node ProxyInstance, so a rendered proxy.js
// can be "reloaded" the way a process manager would do it: SIGHUP restarts the child (SIGTERM,
// then SIGKILL after 2 s, because a graceful server.close() waits for live WebSockets forever);
// SIGTERM stops both. The supervisor writes its own pid to <pidfile> so a remote shell (the
// deploy tests, over SSH) can reload with `kill -HUP $(cat pidfile)`. A child that crashes is
// not restarted until the next SIGHUP, like a deploy whose new proxy.js is broken.
// Prints "CHILD START <pid>" and "CHILD EXIT <code> <signal>" lines for the rig to wait on.
'use strict';

const { spawn } = require('child_process');
const fs = require('fs');

const [script, pidfile] = process.argv.slice(2);
if (!script || !pidfile) {
  process.stderr.write('usage: node supervise.js SCRIPT PIDFILE\n');
  process.exit(2);
}

let child = null;
let restartPending = false;

function start() {
  const c = spawn(process.execPath, [script], { stdio: 'inherit' });
  child = c;
  process.stdout.write('CHILD START ' + c.pid + '\n');
  c.on('exit', (code, signal) => {
    process.stdout.write('CHILD EXIT ' + code + ' ' + signal + '\n');
    if (child === c) child = null;
  });
}

function stopChild(then) {
  const c = child;
  if (!c) {
    then();
    return;
  }
  const killer = setTimeout(() => c.kill('SIGKILL'), 2000);
  c.once('exit', () => {
    clearTimeout(killer);
    then();
  });
  c.kill('SIGTERM');
}

process.on('SIGHUP', () => {
  if (restartPending) return;
  restartPending = true;
  stopChild(() => {
    restartPending = false;
    start();
  });
});
process.on('SIGTERM', () => stopChild(() => process.exit(0)));
process.on('SIGINT', () => stopChild(() => process.exit(0)));

fs.writeFileSync(pidfile, String(process.pid) + '\n');
start();
