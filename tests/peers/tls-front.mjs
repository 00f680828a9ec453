// A TLS terminator (Node's `tls`, i.e. OpenSSL) in front of a plain TCP port on 127.0.0.1: the
// load harness's HTTPS upstream (`--stdio-cost`'s HTTPS row). Prints `{"port": N}` once listening.
//   node tls-front.mjs <cert.pem> <key.pem> <backend port>
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';

const [certFile, keyFile, backend] = process.argv.slice(2);
if (!certFile || !keyFile || !backend) {
  console.error('usage: tls-front.mjs <cert.pem> <key.pem> <backend port>');
  process.exit(2);
}
const server = tls.createServer(
  { cert: readFileSync(certFile), key: readFileSync(keyFile), ALPNProtocols: ['http/1.1'] },
  (client) => {
    const upstream = net.connect(Number(backend), '127.0.0.1');
    upstream.setNoDelay(true);
    client.setNoDelay(true);
    client.pipe(upstream).pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
  },
);
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port })));
