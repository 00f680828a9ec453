// The official TypeScript SDK client (npm `@modelcontextprotocol/sdk`) against a gateway URL, for
// the stdio bridge tests (tests/it/stdio.rs). Nothing here is ours but the glue.
//
//   node sdk-stdio-client.mjs URL
//       connects with `Client` over `StreamableHTTPClientTransport`, declaring sampling with a
//       handler that answers every `sampling/createMessage`, calls the server's
//       `trigger-sampling-request` tool, then `trigger-long-running-operation` with a progress
//       handler. Prints {"sampling": {requests, result}, "progress": [progress values], "long": result}.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CreateMessageRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const [url] = process.argv.slice(2);
const client = new Client({ name: "sdk-stdio-client", version: "1.0.0" }, { capabilities: { sampling: {} } });
const requests = [];
client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
  requests.push(request.params);
  const asked = request.params.messages.map((m) => m.content.text).join(" ");
  return { model: "sdk-test-model", role: "assistant", content: { type: "text", text: `sampled by the SDK client: ${asked}` } };
});
const transport = new StreamableHTTPClientTransport(new URL(url));
await client.connect(transport);
const sampled = await client.callTool({ name: "trigger-sampling-request", arguments: { prompt: "what is 2+2?", maxTokens: 20 } });
const progress = [];
const long = await client.callTool(
  { name: "trigger-long-running-operation", arguments: { duration: 2, steps: 4 } },
  undefined,
  { onprogress: (p) => progress.push(p.progress) },
);
await transport.terminateSession();
await client.close();
process.stdout.write(JSON.stringify({ sampling: { requests: requests.length, result: sampled }, progress, long }) + "\n");
