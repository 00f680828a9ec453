// A real, certified OpenID provider (npm `oidc-provider`, panva) for the SSO integration tests.
//
//   node -r ./loopback-only.cjs oidc-provider.mjs --config CONFIG.json
//
// Everything comes from CONFIG.json, written by the Rust harness (tests/support/oidc.rs):
//
//   {
//     "port": 41234,                       // listens on 127.0.0.1:port
//     "issuer": "http://127.0.0.1:41234",  // may carry a path, e.g. ".../tenant-a" (no trailing '/')
//     "pathDiscovery": "both",             // path issuer only: "both" | "insertion" | "append"
//     "jwksPath": "/tmp/.../jwks.json",    // {"keys": [private JWKs]}: keys[0] signs, all are published
//     "signingAlg": null,                  // JWS alg of JWT access tokens (default: keys[0].alg)
//     "resources": [{"id": "https://mcp.test/mcp", "format": "jwt"}, {"id": "...", "format": "opaque"}],
//     "anyResourceAsJwt": false,           // unknown resource indicators get JWT tokens instead of invalid_target
//     "scope": "mcp:tools mcp:tools:read mcp:admin",
//     "accessTokenTtl": 300,               // seconds
//     "clients": [{client_id, client_secret, grant_types, ...}],
//     "introspectionClients": ["mcp-resource-server"],
//     "dpopRequireNonce": false,
//     "tokenExchange": null,               // or {"subjectAudience": "...", "ttl": 300, "refuseSubjects": []}
//     "extraClients": [],                  // more client registrations (any auth method)
//     "idJag": null,                       // or {"ttl": 300, "clientIds": {"<idp client>": "<client id at the AS>"}}
//     "readyFile": "/tmp/.../ready-1.json" // written (atomically) once listening
//   }
//
// With `tokenExchange`, the RFC 8693 grant `urn:ietf:params:oauth:grant-type:token-exchange` is
// registered (oidc-provider has no native one) with `provider.registerGrantType`. The handler
// records every request's parameters (and the authenticated client and its auth method), served
// at GET /__token-exchange/records as a JSON array; then it accepts only `subject_token_type`
// access_token and `requested_token_type` access_token (or none), verifies the subject token
// with jose against this provider's own keys (issuer = this provider, audience =
// `subjectAudience`, typ at+jwt) — `invalid_grant` otherwise, and for subjects in
// `refuseSubjects` — needs a `resource` of `resources` (or any, with `anyResourceAsJwt`), refuses
// scopes outside `scope` (`invalid_scope`), and issues a JWT access token through oidc-provider's
// own ClientCredentials model (signed, stored, `expires_in` = `ttl`) whose `sub` is the subject
// token's `sub` and whose `act` is `{"sub": <the exchanging client>}` (RFC 8693 §4.1).
//
// With `idJag` (Enterprise-Managed Authorization, SEP-990), the same grant also answers
// `requested_token_type=urn:ietf:params:oauth:token-type:id-jag`: the `subject_token` must be an
// ID token of this provider for the exchanging client (`subject_token_type` id_token, verified
// with jose against the provider's keys, `aud` = the client), `audience` names the MCP
// authorization server's issuer (required); the answer is an ID-JAG signed with the provider's
// signing key (`typ` oauth-id-jag+jwt; `iss`, `sub`, `aud`, `client_id` (the client's id at the
// AS per `clientIds`, default the same id), `resource`, `scope`, `email`, `groups`, `jti`, `iat`,
// `exp` = `ttl`), `issued_token_type` id-jag, `token_type` N_A. The employee's sign-in (the
// browser step) is POST /__sign-in {client_id, sub, email, groups}: an ID token issued by the
// provider's own IdToken model for that client (the claims are remembered for the ID-JAG); with
// `"offline": true` also a refresh token (a Grant and a RefreshToken of the provider's own models,
// scope `openid offline_access`), which the provider's native refresh_token grant redeems for a new
// ID token, rotating the refresh token each time.
//
// When listening it prints one line `OIDC_PROVIDER_READY {json}` on stdout and writes the same
// JSON to readyFile. Note: oidc-provider itself logs notices on stdout (console.info).
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import { SignJWT, createLocalJWKSet, importJWK, jwtVerify } from 'jose';
import Provider, { errors } from 'oidc-provider';
// Internal module of the pinned version (no "exports" map restricts it): the stock memory
// adapter, given an unbounded store (the default store is an LRU of 1000 entries and the default
// adapter prints a "development-only" warning).
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';

const { values: args } = parseArgs({ options: { config: { type: 'string' } } });
if (!args.config) {
  console.error('usage: oidc-provider.mjs --config CONFIG.json');
  process.exit(2);
}
const config = JSON.parse(readFileSync(args.config, 'utf8'));

const jwks = JSON.parse(readFileSync(config.jwksPath, 'utf8'));
if (!Array.isArray(jwks.keys) || jwks.keys.length === 0) {
  throw new Error(`${config.jwksPath} holds no keys`);
}
const [signingKey] = jwks.keys;
const signingAlg = config.signingAlg ?? signingKey.alg;
if (!signingAlg) throw new Error('the first key has no "alg" and no signingAlg is configured');
if (!signingKey.kid) throw new Error('the first key has no "kid"');

const resources = new Map(config.resources.map((resource) => [resource.id, resource]));
const introspectionClients = new Set(config.introspectionClients ?? []);
const ttl = Number(config.accessTokenTtl);

function resourceServerInfo(id, format) {
  const info = {
    audience: id,
    scope: config.scope,
    accessTokenTTL: ttl,
    accessTokenFormat: format,
  };
  if (format === 'jwt') {
    // Pin the first key: keystore selection by alg alone could pick an older key of that alg.
    info.jwt = { sign: { alg: signingAlg, kid: signingKey.kid } };
  }
  return info;
}

// The store interface MemoryAdapter expects (get, set with {maxAge} in ms, delete), unbounded.
class UnboundedStore {
  #map = new Map();

  get(key) {
    const entry = this.#map.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= Date.now()) {
      this.#map.delete(key);
      return undefined;
    }
    return entry.value;
  }

  set(key, value, options) {
    const expiresAt = options?.maxAge === undefined ? Infinity : Date.now() + options.maxAge;
    this.#map.set(key, { value, expiresAt });
  }

  delete(key) {
    this.#map.delete(key);
  }
}
const store = new UnboundedStore();

// token exchange: the subject of each issued token (read by the JWT customizer below)
const exchangedSubjects = new WeakMap();
const exchangeRecords = [];

const provider = new Provider(config.issuer, {
  adapter: (model) => new MemoryAdapter(model, store, 0),
  clients: [...config.clients, ...(config.extraClients ?? [])],
  formats: {
    customizers: {
      async jwt(_ctx, token, jwt) {
        const subject = exchangedSubjects.get(token);
        if (subject) {
          jwt.payload.sub = subject.sub;
          jwt.payload.act = { sub: token.clientId };
        }
      },
    },
  },
  jwks,
  // Not used by client_credentials, but set so nothing falls back to a development default.
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  async findAccount(_ctx, sub) {
    return { accountId: sub, async claims() { return { sub }; } };
  },
  clientDefaults: {
    grant_types: ['client_credentials'],
    response_types: [],
    id_token_signed_response_alg: signingAlg,
    token_endpoint_auth_method: 'client_secret_basic',
  },
  scopes: ['openid', 'offline_access', ...config.scope.split(' ').filter(Boolean)],
  // with `idJag`, every refresh rotates the refresh token (the old one is then spent)
  ...(config.idJag ? { rotateRefreshToken: true } : {}),
  ttl: {
    AccessToken: ttl,
    ClientCredentials: ttl,
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // The resource server's client may introspect any token; other clients only their own.
      async allowedPolicy(ctx, client, token) {
        return introspectionClients.has(client.clientId) || token.clientId === client.clientId;
      },
    },
    revocation: {
      enabled: true,
      // A client may revoke its own tokens only.
      async allowedPolicy(_ctx, client, token) {
        return token.clientId === client.clientId;
      },
    },
    dPoP: {
      enabled: true,
      nonceSecret: randomBytes(32),
      requireNonce: () => Boolean(config.dpopRequireNonce),
    },
    resourceIndicators: {
      enabled: true,
      async getResourceServerInfo(_ctx, resourceIndicator) {
        const known = resources.get(resourceIndicator);
        if (known) return resourceServerInfo(known.id, known.format);
        if (config.anyResourceAsJwt) return resourceServerInfo(resourceIndicator, 'jwt');
        throw new errors.InvalidTarget();
      },
    },
  },
});
provider.on('server_error', (_ctx, err) => console.error('oidc-provider server_error:', err));

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const EXCHANGE_PARAMS = ['subject_token', 'subject_token_type', 'requested_token_type', 'resource', 'audience',
  'scope', 'actor_token', 'actor_token_type'];
const ID_JAG_TYPE = 'urn:ietf:params:oauth:token-type:id-jag';
const ID_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:id_token';
// the signed-in employees' claims, by `sub` (from POST /__sign-in)
const employees = new Map();

// RFC 8693 for an ID-JAG (SEP-990): ID token in, ID-JAG out.
async function issueIdJag(ctx, ownKeys) {
  const { params, client } = ctx.oidc;
  const ij = config.idJag;
  if (params.subject_token_type !== ID_TOKEN_TYPE) {
    throw new errors.InvalidRequest('an ID-JAG is exchanged for an ID token (subject_token_type id_token)');
  }
  if (typeof params.audience !== 'string' || !params.audience) {
    throw new errors.InvalidRequest('audience (the authorization server issuer) is required');
  }
  let idToken;
  try {
    ({ payload: idToken } = await jwtVerify(params.subject_token ?? '', ownKeys, {
      issuer: provider.issuer, audience: client.clientId,
    }));
  } catch (e) {
    throw new errors.InvalidGrant(`subject_token rejected (${e.code ?? 'invalid'})`);
  }
  const employee = employees.get(idToken.sub) ?? {};
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    client_id: (ij.clientIds ?? {})[client.clientId] ?? client.clientId,
    jti: randomBytes(16).toString('base64url'),
  };
  if (params.resource) claims.resource = params.resource;
  if (params.scope) claims.scope = params.scope;
  if (employee.email) claims.email = employee.email;
  if (employee.groups) claims.groups = employee.groups;
  const key = await importJWK(signingKey, signingAlg);
  const idJag = await new SignJWT(claims)
    .setProtectedHeader({ alg: signingAlg, kid: signingKey.kid, typ: 'oauth-id-jag+jwt' })
    .setIssuer(provider.issuer)
    .setSubject(idToken.sub)
    .setAudience(params.audience)
    .setIssuedAt(now)
    .setExpirationTime(now + Number(ij.ttl ?? 300))
    .sign(key);
  ctx.body = {
    access_token: idJag, issued_token_type: ID_JAG_TYPE, token_type: 'N_A', expires_in: Number(ij.ttl ?? 300),
  };
  if (params.scope) ctx.body.scope = params.scope;
}

if (config.tokenExchange || config.idJag) {
  const te = config.tokenExchange ?? {};
  // eslint-disable-next-line no-unused-vars
  const ownKeys = createLocalJWKSet({ keys: jwks.keys.map(({ d, p, q, dp, dq, qi, ...pub }) => pub) });
  provider.registerGrantType(TOKEN_EXCHANGE, async (ctx) => {
    const { params, client } = ctx.oidc;
    const record = { grant_type: params.grant_type, client_id: client.clientId, client_auth_method: client.clientAuthMethod };
    for (const name of [...EXCHANGE_PARAMS, 'client_assertion_type']) {
      if (params[name] !== undefined) record[name] = params[name];
    }
    record.subject_token_sha256 = createHash('sha256').update(params.subject_token ?? '').digest('base64url');
    if (params.client_assertion !== undefined) {
      record.client_assertion_sha256 = createHash('sha256').update(params.client_assertion).digest('base64url');
    }
    exchangeRecords.push(record);

    if (config.idJag && params.requested_token_type === ID_JAG_TYPE) {
      await issueIdJag(ctx, ownKeys);
      return;
    }
    if (!config.tokenExchange) throw new errors.InvalidRequest('unsupported requested_token_type');
    if (params.subject_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest('unsupported subject_token_type');
    }
    if (params.requested_token_type !== undefined && params.requested_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest('unsupported requested_token_type');
    }
    let subject;
    try {
      ({ payload: subject } = await jwtVerify(params.subject_token ?? '', ownKeys, {
        issuer: provider.issuer, audience: te.subjectAudience, typ: 'at+jwt',
      }));
    } catch (e) {
      throw new errors.InvalidGrant(`subject_token rejected (${e.code ?? 'invalid'})`);
    }
    if ((te.refuseSubjects ?? []).includes(subject.sub)) {
      throw new errors.InvalidGrant('this subject may not obtain tokens for that resource');
    }
    const resource = params.resource;
    if (typeof resource !== 'string' || !(resources.has(resource) || config.anyResourceAsJwt)) {
      throw new errors.InvalidTarget();
    }
    const requested = (params.scope ?? '').split(' ').filter(Boolean);
    const allowed = new Set(config.scope.split(' '));
    const refused = requested.filter((scope) => !allowed.has(scope));
    if (refused.length) throw new errors.InvalidScope('requested scope is not allowed', refused.join(' '));

    const info = { ...resourceServerInfo(resource, 'jwt'), accessTokenTTL: Number(te.ttl ?? ttl) };
    const token = new provider.ClientCredentials({
      client, scope: requested.join(' ') || undefined, expiresIn: info.accessTokenTTL,
    });
    token.resourceServer = new provider.ResourceServer(resource, info);
    exchangedSubjects.set(token, subject);
    ctx.oidc.entity('ClientCredentials', token);
    const value = await token.save();
    ctx.body = {
      access_token: value,
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: 'Bearer',
      expires_in: token.expiration,
      scope: token.scope || undefined,
    };
  }, EXCHANGE_PARAMS, ['resource', 'audience']);
}

// Issuer path (e.g. /tenant-a): the provider's routes live under it. Discovery is reachable by
// RFC 8414 path insertion (/.well-known/oauth-authorization-server/tenant-a, also for
// openid-configuration) and/or by OpenID Connect Discovery appending (/tenant-a/.well-known/...),
// as `pathDiscovery` says.
const issuerPath = new URL(config.issuer).pathname.replace(/\/$/, '');
const pathDiscovery = config.pathDiscovery ?? 'both';
const WELL_KNOWN = ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration'];

function route(rawUrl) {
  if (!issuerPath) return rawUrl;
  const url = new URL(rawUrl, 'http://internal');
  const { pathname, search } = url;
  for (const wellKnown of WELL_KNOWN) {
    if (pathname === `${wellKnown}${issuerPath}`) {
      return pathDiscovery === 'append' ? null : `${wellKnown}${search}`;
    }
  }
  if (pathname === issuerPath || pathname.startsWith(`${issuerPath}/`)) {
    const inner = pathname.slice(issuerPath.length) || '/';
    if (WELL_KNOWN.includes(inner) && pathDiscovery === 'insertion') return null;
    return `${inner}${search}`;
  }
  return null;
}

// The employee's browser sign-in, condensed: an ID token from the provider's own IdToken model.
function signIn(req, res) {
  let body = '';
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', async () => {
    try {
      const { client_id: clientId, sub, email, groups, offline } = JSON.parse(body);
      const client = await provider.Client.find(clientId);
      if (!client) throw new Error(`unknown client ${clientId}`);
      employees.set(sub, { email, groups });
      const token = new provider.IdToken({ sub }, { client });
      token.set('sub', sub);
      if (email) token.set('email', email);
      const idToken = await token.issue({ use: 'idtoken' });
      const answer = { id_token: idToken };
      if (offline) {
        // offline_access consented: a grant and a refresh token of the provider's own models
        // (what its authorization_code grant stores), redeemed by its native refresh_token grant
        const grant = new provider.Grant({ accountId: sub, clientId });
        grant.addOIDCScope('openid offline_access');
        const grantId = await grant.save();
        const refreshToken = new provider.RefreshToken({
          accountId: sub, client, grantId, gty: 'authorization_code', scope: 'openid offline_access',
          authTime: Math.floor(Date.now() / 1000),
        });
        answer.refresh_token = await refreshToken.save();
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer));
    } catch (e) {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'invalid_request', error_description: String(e.message) }));
    }
  });
}

const callback = provider.callback();
const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/__token-exchange/records') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(exchangeRecords));
    return;
  }
  if (config.idJag && req.method === 'POST' && req.url === '/__sign-in') {
    signIn(req, res);
    return;
  }
  const routed = route(req.url);
  if (routed === null) {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: 'not_found', error_description: `no route for ${req.url}` }));
    return;
  }
  req.url = routed;
  // oidc-provider builds its endpoint URLs from the request (Host header, and the mount path
  // taken from the Express-style `baseUrl`), not from the issuer.
  req.baseUrl = issuerPath;
  callback(req, res);
});

server.listen(config.port, '127.0.0.1', () => {
  const ready = {
    issuer: config.issuer,
    port: server.address().port,
    pid: process.pid,
    signingKid: signingKey.kid,
    signingAlg,
    kids: jwks.keys.map((key) => key.kid),
    node: process.version,
  };
  const line = JSON.stringify(ready);
  if (config.readyFile) {
    writeFileSync(`${config.readyFile}.tmp`, line);
    renameSync(`${config.readyFile}.tmp`, config.readyFile);
  }
  console.log(`OIDC_PROVIDER_READY ${line}`);
});
server.on('error', (err) => {
  console.error(`oidc-provider listen error: ${err.code ?? ''} ${err.message}`);
  process.exit(1);
});
