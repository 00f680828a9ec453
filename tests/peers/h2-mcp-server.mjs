// An MCP server over HTTP/2 only: Node's `http2.createSecureServer` with `allowHTTP1: false` (ALPN
// offers `h2` alone, an HTTP/1.1-only client cannot connect) serving the official TypeScript SDK's
// stateless Streamable HTTP transport with one tool, `protocol`, that answers the HTTP version the
// request arrived with. Prints `{"port": N}` once listening; logs `request <httpVersion>` per
// request on stdout.
//   node -r ./loopback-only.cjs h2-mcp-server.mjs <cert.pem> <key.pem>
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';

const [certFile, keyFile] = process.argv.slice(2);
if (!certFile || !keyFile) {
  console.error('usage: h2-mcp-server.mjs <cert.pem> <key.pem>');
  process.exit(2);
}

const server = http2.createSecureServer(
  { cert: readFileSync(certFile), key: readFileSync(keyFile), allowHTTP1: false },
  async (req, res) => {
    console.log(`request ${req.httpVersion}`);
    const mcp = new McpServer({ name: 'h2-only', version: '1.0.0' });
    mcp.registerTool('protocol', { description: 'The HTTP version of this request' }, async () => ({
      content: [{ type: 'text', text: req.httpVersion }],
    }));
    // stateless: a server and transport per request
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    res.on('close', () => {
      transport.close();
      mcp.close();
    });
    try {
      await mcp.connect(transport);
      await transport.handleRequest(req, res);
    } catch (e) {
      console.error(e);
      if (!res.headersSent) {
        res.writeHead(500).end();
      }
    }
  },
);
server.listen(0, () => console.log(JSON.stringify({ port: server.address().port })));
