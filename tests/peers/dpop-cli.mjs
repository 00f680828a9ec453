// DPoP helpers (npm `dpop` and `jose`, both panva) for the tests, independent of the Rust code
// under test. One run does a whole batch, so a test pays for one Node start-up.
//
//   node dpop-cli.mjs < [OP, OP, ...]
//
// prints a JSON array with one result per OP, in order: {"ok": true, "value": ...} or
// {"ok": false, "error": "..."}. Every JWK below is a private JWK with "alg" (as
// `jose-cli.mjs gen-key` prints them). The OPs:
//
//   {"op": "dpop-proof", "jwk", "htu", "htm", "nonce"?, "accessToken"?}
//       A proof made by npm `dpop` `generateProof(keyPair, htu, htm, nonce, accessToken)`: the
//       library picks `alg` from the key (ES256, RS256, PS256, or "Ed25519" for Ed25519 keys) and
//       sets `iat` and `jti` itself. value: the compact JWS.
//   {"op": "signjwt-proof", "jwk", "htu", "htm", "nonce"?, "accessToken"?}
//       The same proof made with `jose` `SignJWT` (alg = the JWK's "alg", so "EdDSA" for Ed25519).
//   {"op": "sign", "jwk", "header", "payload": "<base64url bytes>"}
//       `jose` `CompactSign` of exactly those bytes under exactly that protected header ("alg"
//       must suit the key; an "oct" JWK signs HS256). For hostile proofs and for access tokens.
//   {"op": "verify-proof", "proof", "algorithms"?}
//       `jose` `jwtVerify(proof, EmbeddedJWK, {typ: "dpop+jwt"})`. value: {"protectedHeader",
//       "payload", "jkt"} where "jkt" is the RFC 7638 thumbprint of the embedded "jwk".
//   {"op": "ath", "accessToken"}
//       base64url(SHA-256(accessToken)), computed with WebCrypto.
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';

import { generateProof } from 'dpop';
import {
  calculateJwkThumbprint, CompactSign, EmbeddedJWK, importJWK, jwtVerify, SignJWT,
} from 'jose';

const PRIVATE = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

// The public members only (what a proof's "jwk" header carries).
function publicJwk(jwk) {
  const out = {};
  for (const m of ['kty', 'crv', 'e', 'n', 'x', 'y']) if (jwk[m] !== undefined) out[m] = jwk[m];
  return out;
}

function stripPrivate(jwk) {
  const out = { ...jwk };
  for (const m of [...PRIVATE, 'key_ops', 'ext']) delete out[m];
  return out;
}

async function keyPair(jwk) {
  const privateKey = await importJWK({ ...jwk, key_ops: undefined, ext: undefined }, jwk.alg);
  const publicKey = await importJWK(stripPrivate(jwk), jwk.alg, { extractable: true });
  return { privateKey, publicKey };
}

async function run(op) {
  switch (op.op) {
    case 'dpop-proof': {
      const pair = await keyPair(op.jwk);
      return generateProof(pair, op.htu, op.htm, op.nonce ?? undefined, op.accessToken ?? undefined);
    }
    case 'signjwt-proof': {
      const { privateKey } = await keyPair(op.jwk);
      const claims = { htm: op.htm, htu: op.htu };
      if (op.nonce != null) claims.nonce = op.nonce;
      if (op.accessToken != null) {
        const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(op.accessToken));
        claims.ath = Buffer.from(digest).toString('base64url');
      }
      return new SignJWT(claims)
        .setProtectedHeader({ alg: op.jwk.alg, typ: 'dpop+jwt', jwk: publicJwk(op.jwk) })
        .setIssuedAt()
        .setJti(randomUUID())
        .sign(privateKey);
    }
    case 'sign': {
      const key = await importJWK(op.jwk, op.header.alg);
      const payload = Buffer.from(op.payload, 'base64url');
      return new CompactSign(payload).setProtectedHeader(op.header).sign(key);
    }
    case 'verify-proof': {
      const options = { typ: 'dpop+jwt' };
      if (op.algorithms) options.algorithms = op.algorithms;
      const { payload, protectedHeader } = await jwtVerify(op.proof, EmbeddedJWK, options);
      return { protectedHeader, payload, jkt: await calculateJwkThumbprint(protectedHeader.jwk) };
    }
    case 'ath': {
      const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(op.accessToken));
      return Buffer.from(digest).toString('base64url');
    }
    default:
      throw new Error(`unknown op ${JSON.stringify(op.op)}`);
  }
}

const ops = JSON.parse(readFileSync(0, 'utf8'));
if (!Array.isArray(ops)) {
  console.error('usage: dpop-cli.mjs < [op, ...]  (see the header of this file)');
  process.exit(2);
}
const results = [];
for (const op of ops) {
  try {
    results.push({ ok: true, value: await run(op) });
  } catch (err) {
    results.push({ ok: false, error: `${err.name}: ${err.message}` });
  }
}
console.log(JSON.stringify(results));
