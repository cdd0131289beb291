// A Keycloak-shaped authorization server built on panva's oidc-provider, for tests/system/test_interop.py.
//
//   node interop/server.mjs --port 8080 --state DIR [--realm interop] [--rotate] [--dpop-nonce] [--tls DIR]
//
// Issuer http://127.0.0.1:<port>/realms/<realm>, Keycloak's endpoint paths, JWT access tokens in
// Keycloak's claim layout, an RS256 signing key plus a published RSA-OAEP `use: "enc"` key.
// DIR keeps the realm's keys across restarts (keys.json, made on first start; --rotate puts a new
// signing key first and keeps publishing the old ones) and holds client-keys.json: the public JWK
// Sets of the private_key_jwt clients, written by the tests.
// DPoP (RFC 9449): a token request with a proof gets a token bound to its key, in Keycloak 26.7's shape
// (payload `typ: "DPoP"`, `cnf: {jkt, "kc-jkt-type": "DPoP"}`, answer `token_type: "DPoP"`); proofs may
// use Keycloak's asymmetric algorithms; --dpop-nonce demands server nonces (RFC 9449 §8), which
// Keycloak does not, to test the clients that must handle them.
// --tls DIR (RFC 8705): HTTPS with DIR's server.cert.pem and server.key.pem, asking every caller for a
// certificate chaining to DIR's ca.cert.pem (optional, as Keycloak's "request" mode); the issuer is then
// https://..., discovery advertises `mtls_endpoint_aliases` (the same endpoints, as Keycloak's) and the
// client machine-a-x509 authenticates by certificate (`tls_client_auth`, Keycloak's `client-x509` with
// x509.subjectdn CN=machine-a) and gets tokens bound to it (`cnf["x5t#S256"]`).
// oidc-provider 9 warns "Unsupported runtime" on Node 20 (it wants 22); everything used here works.
import { X509Certificate, randomBytes, randomUUID, generateKeyPairSync } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string' },
    state: { type: 'string' },
    realm: { type: 'string', default: 'interop' },
    rotate: { type: 'boolean', default: false },
    'dpop-nonce': { type: 'boolean', default: false },
    tls: { type: 'string' },
  },
});
if (!opts.port || !opts.state) {
  throw new Error('usage: server.mjs --port PORT --state DIR [--realm R] [--rotate] [--dpop-nonce] [--tls DIR]');
}

const prefix = `/realms/${opts.realm}`;
const issuer = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${opts.port}${prefix}`;
const API = 'machine-b'; // the resource server (Machine B's client id)

// Keycloak's realm clients. `audience: true` stands for an audience mapper adding the API to `aud`;
// `roles` are client roles of the API held by the caller's service account.
const CLIENTS = {
  'machine-a': { auth: 'private_key_jwt', scope: 'orders:read', audience: true, roles: ['writer'] },
  reporting: { auth: 'client_secret_basic', scope: 'orders:read', audience: true, roles: [] },
  stranger: { auth: 'client_secret_basic', scope: 'orders:read', audience: false, roles: [] },
  [API]: { auth: 'client_secret_basic' }, // the API's own client, introspecting with its secret
  [`${API}-signed`]: { auth: 'private_key_jwt' }, // the API introspecting with a signed JWT instead
  ...(opts.tls && {
    'machine-a-x509': { auth: 'tls_client_auth', scope: 'orders:read', audience: true, roles: ['writer'] },
  }),
};
const X509_SUBJECT = 'CN=machine-a'; // Keycloak's x509.subjectdn of machine-a-x509
const secret = (id) => `${id}-secret`;
const serviceAccountIds = Object.fromEntries(Object.keys(CLIENTS).map((id) => [id, randomUUID()]));

function rsaJwk(use, alg) {
  const jwk = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: randomUUID(), use, alg };
}

const keysFile = join(opts.state, 'keys.json');
const keys = existsSync(keysFile)
  ? JSON.parse(readFileSync(keysFile, 'utf8'))
  : { sig: [rsaJwk('sig', 'RS256')], enc: rsaJwk('enc', 'RSA-OAEP') };
if (opts.rotate) keys.sig.unshift(rsaJwk('sig', 'RS256')); // Keycloak signs with the new key at once
writeFileSync(keysFile, JSON.stringify(keys));
const clientKeys = JSON.parse(readFileSync(join(opts.state, 'client-keys.json'), 'utf8'));

// How a client authenticates: its registered keys, a certificate with Keycloak's x509.subjectdn, or a secret.
function clientCredential(id, auth) {
  if (auth === 'private_key_jwt') return { jwks: clientKeys[id] };
  if (auth === 'tls_client_auth') {
    return { tls_client_auth_subject_dn: X509_SUBJECT, tls_client_certificate_bound_access_tokens: true };
  }
  return { client_secret: secret(id) };
}

// RFC 8705 §5: the endpoints to use over mutual TLS, the same ones here since one server asks every
// caller for a certificate (as Keycloak's aliases are its usual endpoints).
function mtlsAliases() {
  const endpoint = (name) => `${issuer}/protocol/openid-connect/${name}`;
  return { token_endpoint: endpoint('token'), introspection_endpoint: endpoint('token/introspect'),
    revocation_endpoint: endpoint('revoke') };
}

function tlsOptions(dir) {
  const read = (name) => readFileSync(join(dir, name));
  return {
    cert: read('server.cert.pem'),
    key: read('server.key.pem'),
    ca: read('ca.cert.pem'),
    requestCert: true, // ask for a client certificate...
    rejectUnauthorized: false, // ...without requiring one: certificateAuthorized tells whether it chains
  };
}

const provider = new Provider(issuer, {
  jwks: { keys: [...keys.sig, keys.enc] }, // the first signing key signs
  routes: {
    token: '/protocol/openid-connect/token',
    jwks: '/protocol/openid-connect/certs',
    introspection: '/protocol/openid-connect/token/introspect',
    revocation: '/protocol/openid-connect/revoke',
  },
  scopes: ['openid', 'orders:read'],
  enabledJWA: {
    // Keycloak's DPoP proof algorithms (oidc-provider's default is ES256 and EdDSA only)
    dPoPSigningAlgValues: ['ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512', 'EdDSA'],
  },
  ttl: { ClientCredentials: 300 }, // Keycloak's default access token lifespan
  clients: Object.entries(CLIENTS).map(([id, client]) => ({
    client_id: id,
    token_endpoint_auth_method: client.auth,
    grant_types: client.scope ? ['client_credentials'] : [],
    response_types: [],
    redirect_uris: [],
    ...(client.scope && { scope: client.scope }),
    ...clientCredential(id, client.auth),
  })),
  ...(opts.tls && {
    discovery: { mtls_endpoint_aliases: mtlsAliases() },
    // oidc-provider's default methods, and the certificate
    clientAuthMethods: ['client_secret_basic', 'client_secret_jwt', 'client_secret_post', 'private_key_jwt', 'none',
      'tls_client_auth'],
  }),
  features: {
    devInteractions: { enabled: false },
    encryption: { enabled: true }, // gives the `use: "enc"` key a purpose (encrypted request objects)
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    dPoP: {
      enabled: true,
      ...(opts['dpop-nonce'] && { nonceSecret: randomBytes(32), requireNonce: () => true }),
    },
    mTLS: {
      enabled: Boolean(opts.tls),
      certificateBoundAccessTokens: true,
      tlsClientAuth: true,
      getCertificate: (ctx) => {
        const peer = ctx.socket.getPeerCertificate?.();
        return peer?.raw ? new X509Certificate(peer.raw) : undefined;
      },
      certificateAuthorized: (ctx) => ctx.socket.authorized, // chains to --tls DIR's ca.cert.pem
      // RFC 4514 order (most specific first) of the subject node lists the other way round
      certificateSubjectMatches: (ctx, property, expected) => property === 'tls_client_auth_subject_dn'
        && new X509Certificate(ctx.socket.getPeerCertificate().raw).subject.split('\n').reverse().join(',') === expected,
    },
    resourceIndicators: {
      enabled: true,
      // Keycloak has no resource parameter: every token is for the realm's one "resource server".
      defaultResource: () => 'urn:interop:realm',
      getResourceServerInfo: (ctx, resource, client) => ({
        scope: 'orders:read',
        audience: CLIENTS[client.clientId].audience ? API : 'account', // `account`: Keycloak's default
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  extraTokenClaims: (ctx, token) => {
    const { roles = [] } = CLIENTS[token.clientId];
    return {
      typ: token.jkt ? 'DPoP' : 'Bearer', // Keycloak's DPoP-bound tokens say DPoP (also when introspected)
      azp: token.clientId,
      acr: '1',
      preferred_username: `service-account-${token.clientId}`,
      realm_access: { roles: ['offline_access', 'uma_authorization', `default-roles-${opts.realm}`] },
      resource_access: {
        ...(roles.length && { [API]: { roles } }),
        account: { roles: ['manage-account', 'view-profile'] },
      },
    };
  },
  formats: {
    customizers: {
      // Keycloak's header `typ` is JWT, its `sub` the service-account user's id, `aud` lists `account`
      // beside the API, and `scope` always holds the default scopes.
      jwt: (ctx, token, jwt) => {
        jwt.header = { typ: 'JWT' };
        const { payload } = jwt;
        payload.sub = serviceAccountIds[token.clientId];
        if (payload.aud !== 'account') payload.aud = [payload.aud, 'account'];
        payload.scope = ['profile', 'email', ...(payload.scope ? [payload.scope] : [])].join(' ');
        if (payload.cnf?.jkt) payload.cnf['kc-jkt-type'] = 'DPoP'; // Keycloak 26.7's private member
      },
    },
  },
});

// oidc-provider does not store JWT access tokens and refuses them at introspection and revocation,
// where Keycloak accepts them. So each issued one is also stored under its `jti` in oidc-provider's
// opaque shape, and those two endpoints get the `jti` in place of the JWT (below).
provider.on('client_credentials.issued', (token) => {
  const iat = Math.floor(Date.now() / 1000);
  const { jti, clientId, aud, scope, extra, jkt, 'x5t#S256': x5t } = token; // introspection keeps the binding
  const stored = {
    kind: 'ClientCredentials', format: 'opaque', jti, clientId, aud, scope, extra, jkt, 'x5t#S256': x5t, iat,
  };
  provider.ClientCredentials.adapter.upsert(jti, { ...stored, exp: iat + token.expiration }, token.expiration);
});

const byJti = new Set([provider.pathFor('introspection'), provider.pathFor('revocation')]);
provider.use(async (ctx, next) => {
  if (ctx.method === 'POST' && byJti.has(`${prefix}${ctx.path}`)) {
    const form = new URLSearchParams(Buffer.concat(await ctx.req.toArray()).toString());
    const [, payload] = (form.get('token') ?? '').split('.');
    try {
      form.set('token', JSON.parse(Buffer.from(payload, 'base64url')).jti);
    } catch {} // not a JWT: oidc-provider judges it as it is
    ctx.req.body = form.toString(); // read by oidc-provider since the stream is consumed (it warns once)
  }
  await next();
});

// The provider is mounted at the issuer's path (it derives the mount path from `originalUrl`, as
// under Express); everything else is 404.
const callback = provider.callback();
const handler = (req, res) => {
  if (req.url.startsWith(`${prefix}/`)) {
    req.originalUrl = req.url;
    req.url = req.url.slice(prefix.length);
    callback(req, res);
  } else {
    res.writeHead(404).end();
  }
};
const server = opts.tls ? createHttpsServer(tlsOptions(opts.tls), handler) : createServer(handler);
server.listen(Number(opts.port), '127.0.0.1', () => console.log(`listening ${issuer}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
