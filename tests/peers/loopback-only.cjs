'use strict';
// Preloaded into every Node peer the tests start (`node -r ./loopback-only.cjs ...`).
//
// 1. Loopback only: rewrites the host of every TCP `net.Server.prototype.listen()` call to
//    127.0.0.1, whatever the program asked for (server-everything listens on all interfaces
//    and has no host setting). Unix-socket and handle listens are left alone.
// 2. No orphans: if MCP_TEST_PARENT_PID is set, the process exits as soon as that process is
//    gone (the test harness was killed before it could stop us).
const net = require('node:net');

const HOST = '127.0.0.1';
const originalListen = net.Server.prototype.listen;

function isPort(value) {
  return typeof value === 'number' || (typeof value === 'string' && /^\d+$/.test(value));
}

// A random-port listen on 127.0.0.1 without the asynchronous host lookup node makes for any
// `host`: what net.Server#listen does for the primary process (`_listen2`), then the callback
// on 'listening'. Only for listen(0), listen(0, cb), listen(cb) and listen(); false: not handled.
function syncListen(server, args) {
  const rest = args.filter((a) => a !== undefined && a !== 0 && a !== '0');
  if (rest.length > 1 || (rest.length === 1 && typeof rest[0] !== 'function')) return false;
  if (typeof server._listen2 !== 'function' || require('node:cluster').isWorker) return false;
  if (server._handle) return false;
  if (rest.length === 1) server.once('listening', rest[0]);
  server._listen2(HOST, 0, 4, 511, undefined, 0);
  return true;
}

net.Server.prototype.listen = function loopbackOnlyListen(...args) {
  const first = args[0];
  if (first !== null && typeof first === 'object' && !Array.isArray(first)) {
    // listen(options[, cb]); options with `path`/`fd`/`_handle` are not TCP.
    if (first.path === undefined && first.fd === undefined && first._handle === undefined && first.handle === undefined) {
      args[0] = { ...first, host: HOST };
    }
    return originalListen.apply(this, args);
  }
  if ((first === 0 || first === '0' || first === undefined || typeof first === 'function') && syncListen(this, args)) {
    // listen(0[, cb]) / listen([cb]): bound at once, as node binds a host-less listen, so a
    // caller reading address().port right after listen() gets it (the conformance suite does)
    return this;
  }
  if (isPort(first)) {
    // listen(port[, host][, backlog][, cb])
    const rest = args.slice(1);
    if (typeof rest[0] === 'string') rest.shift();
    return originalListen.call(this, Number(first), HOST, ...rest);
  }
  if (first === undefined || typeof first === 'function') {
    // listen([cb]): random port
    return originalListen.call(this, 0, HOST, ...args);
  }
  // listen(path[, ...]) (Unix socket) or listen(handle[, ...])
  return originalListen.apply(this, args);
};

const parentPid = Number(process.env.MCP_TEST_PARENT_PID);
if (Number.isInteger(parentPid) && parentPid > 1) {
  const timer = setInterval(() => {
    try {
      process.kill(parentPid, 0);
    } catch (err) {
      if (err && err.code === 'ESRCH') process.exit(0);
    }
  }, 1000);
  timer.unref();
}
