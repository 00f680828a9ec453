// JOSE helpers (npm `jose`, panva) for the tests, independent of the Rust code under test.
//
//   node jose-cli.mjs gen-key ALG [ALG...]
//       Prints a JSON array with one new private JWK per ALG (ES256, ES384, RS256, PS256, EdDSA,
//       ...), each with "kid" (its RFC 7638 thumbprint), "alg" and "use": "sig".
//
//   node jose-cli.mjs sign < {"jwk": {...}, "header": {...}, "payload": "<base64url bytes>"}
//       Prints the compact JWS of exactly those payload bytes under exactly that protected header
//       ("alg" must suit the key; an "oct" JWK signs HS256/384/512).
//
//   node jose-cli.mjs sign-jwts < [{"jwk": {...}, "header": {...}, "claims": {...}}, ...]
//       Prints a JSON array with one JWT per request, built with jose's JWT producer `SignJWT`
//       (claims as given, protected header as given; "alg" must suit the key). One Node start-up
//       for a whole batch of workload tokens.
//
//   node jose-cli.mjs gen-pkcs8 ALG
//       Prints {"pem": <PKCS#8 PEM private key>, "jwk": <its public JWK with kid (thumbprint), alg, use>}.
//
//   node jose-cli.mjs verify-remote < {"jwks_uri": "...", "jwts": ["..."], "issuer": "...", "audience": "...",
//                                      "typ": "at+jwt", "algorithms": ["ES256"]}
//       Verifies each JWT with jose's `jwtVerify` against the remote JWK Set (`createRemoteJWKSet`,
//       fetched over HTTP), checking issuer, audience, typ, algorithms and exp (no clock tolerance).
//       Prints a JSON array with, per JWT, {"ok": true, "header": ..., "payload": ...} or
//       {"ok": false, "code": "<jose error code>", "message": ...}.
import { readFileSync } from 'node:fs';

import {
  calculateJwkThumbprint, CompactSign, createRemoteJWKSet, exportJWK, exportPKCS8, generateKeyPair, importJWK,
  jwtVerify,
  SignJWT,
} from 'jose';

const [command, ...rest] = process.argv.slice(2);

async function genKey(alg) {
  const options = { extractable: true };
  if (alg.startsWith('RS') || alg.startsWith('PS')) options.modulusLength = 2048;
  const { privateKey } = await generateKeyPair(alg, options);
  const jwk = await exportJWK(privateKey);
  jwk.kid = await calculateJwkThumbprint(jwk);
  jwk.alg = alg;
  jwk.use = 'sig';
  return jwk;
}

switch (command) {
  case 'gen-key': {
    if (rest.length === 0) throw new Error('gen-key needs at least one algorithm');
    const keys = [];
    for (const alg of rest) keys.push(await genKey(alg));
    console.log(JSON.stringify(keys));
    break;
  }
  case 'sign': {
    const input = JSON.parse(readFileSync(0, 'utf8'));
    const { jwk, header } = input;
    const key = await importJWK(jwk, header.alg);
    const payload = Buffer.from(input.payload, 'base64url');
    const jws = await new CompactSign(payload).setProtectedHeader(header).sign(key);
    console.log(jws);
    break;
  }
  case 'sign-jwts': {
    const requests = JSON.parse(readFileSync(0, 'utf8'));
    const jwts = [];
    for (const { jwk, header, claims } of requests) {
      const key = await importJWK(jwk, header.alg);
      jwts.push(await new SignJWT(claims).setProtectedHeader(header).sign(key));
    }
    console.log(JSON.stringify(jwts));
    break;
  }
  case 'gen-pkcs8': {
    const [alg] = rest;
    const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
    const jwk = await exportJWK(publicKey);
    jwk.kid = await calculateJwkThumbprint(jwk);
    jwk.alg = alg;
    jwk.use = 'sig';
    console.log(JSON.stringify({ pem: await exportPKCS8(privateKey), jwk }));
    break;
  }
  case 'verify-remote': {
    const input = JSON.parse(readFileSync(0, 'utf8'));
    const jwks = createRemoteJWKSet(new URL(input.jwks_uri), { cooldownDuration: 0 });
    const results = [];
    for (const jwt of input.jwts) {
      try {
        const { payload, protectedHeader } = await jwtVerify(jwt, jwks, {
          issuer: input.issuer,
          audience: input.audience,
          typ: input.typ,
          algorithms: input.algorithms,
          requiredClaims: ['exp', 'iat', 'jti', 'sub'],
        });
        results.push({ ok: true, header: protectedHeader, payload });
      } catch (e) {
        results.push({ ok: false, code: e.code ?? 'ERR', message: String(e.message) });
      }
    }
    console.log(JSON.stringify(results));
    break;
  }
  default:
    console.error('usage: jose-cli.mjs gen-key ALG [ALG...] | jose-cli.mjs sign < request.json | jose-cli.mjs sign-jwts < requests.json | jose-cli.mjs verify-remote < request.json');
    process.exit(2);
}
