// Tiny shared CLI parser for the test servers in this folder: `--name=value` or `--name value`,
// falling back to the environment variable SW_<NAME> (dashes become underscores). Kept here so
// every server reads its settings the same way and tests/rig.py can drive them uniformly.
'use strict';

function parseArgs(argv, defaults) {
  const out = Object.assign({}, defaults);
  for (const key of Object.keys(defaults)) {
    const env = process.env['SW_' + key.toUpperCase().replace(/-/g, '_')];
    if (env !== undefined) out[key] = env;
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) throw new Error('unexpected argument: ' + arg);
    let name = arg.slice(2);
    let value;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    } else {
      value = argv[++i];
    }
    if (!(name in defaults)) throw new Error('unknown option: --' + name);
    if (value === undefined) throw new Error('missing value for --' + name);
    out[name] = value;
  }
  return out;
}

// Ask for a large accept backlog: Node's default (511) overflows from ~1,000 simultaneous
// connects (TESTBED.md), which would turn load tests into SYN-retry benchmarks.
function listen(server, opts, onReady) {
  server.listen({ port: Number(opts.port), host: opts.host, backlog: Number(opts.backlog) }, () => {
    const addr = server.address();
    // The rig waits for exactly this line; port 0 means "pick one", so always print the real one.
    process.stdout.write('READY ' + addr.port + '\n');
    if (onReady) onReady(addr.port);
  });
  server.on('error', (err) => {
    process.stderr.write('listen failed: ' + err.message + '\n');
    process.exit(2);
  });
}

function exitOnSignals(server) {
  const stop = () => {
    server.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

module.exports = { parseArgs, listen, exitOnSignals };
