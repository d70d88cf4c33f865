// Integration-test authorization server for deviceauth (OAuth 2.0 Device Authorization Grant,
// RFC 8628), built on oidc-provider 9.x. Test use only: in-memory state, dev signing keys,
// fixed client secrets, unauthenticated /__test hooks. Listens on loopback only.
//
// Usage:
//   node tests/server/server.mjs [flags]
//
// Flags (all optional):
//   --host H              listen address (default 127.0.0.1)
//   --port P              listen port; 0 picks a free port (default 0)
//   --mode plain|keycloak plain: issuer http://H:P with oidc-provider's default routes.
//                         keycloak: issuer http://H:P/auth/realms/<realm> with Keycloak's
//                         /protocol/openid-connect/... endpoint paths, and `refresh_expires_in`
//                         added to successful token responses (default plain)
//   --realm NAME          Keycloak realm name in keycloak mode (default rrap)
//   --access-ttl S        AccessToken lifetime in seconds (default 60)
//   --refresh-ttl S       RefreshToken lifetime in seconds, renewed on each rotation (default 3600)
//   --device-ttl S        DeviceCode lifetime / `expires_in` in seconds (default 600)
//   --interval S          `interval` sent in the device authorization response (default 1)
//   --slow-down N         answer the first N polls of each device code with `slow_down` (default 0)
//   --no-discovery-oidc   serve only RFC 8414 /.well-known/oauth-authorization-server;
//                         /.well-known/openid-configuration answers 404
//   --no-device           do not enable (or advertise) the device flow
//   --no-stdin-watch      do not exit when stdin closes (for running it by hand in background)
//
// Once listening it prints exactly one JSON line to stdout:
//   {"ready": true, "port": P, "issuer": "...", "base_url": "http://H:P"}
// and nothing else ever goes to stdout (oidc-provider's notices are redirected to stderr).
// It exits on SIGTERM/SIGINT and when stdin reaches EOF, so it cannot outlive the process that
// started it with a pipe on its stdin.
//
// Clients:
//   client-tools         public (token_endpoint_auth_method none)
//   confidential-client  secret `confidential-secret`, client_secret_basic
//   both: grants device_code + refresh_token + authorization_code, redirect http://127.0.0.1/callback
// Scopes: openid offline_access profile email api. Any account id is accepted (findAccount).
//
// Test-only endpoints at the root of the port (outside the issuer path), JSON in/out:
//   POST /__test/approve     {"user_code": "...", "account_id": "alice"}  -> 200 / 404 / 409
//   POST /__test/deny        {"user_code": "..."}                          -> 200 / 404 / 409
//   GET  /__test/stats       counters since start or last reset (shape: see emptyStats())
//   POST /__test/reset       zero the counters
//   POST /__test/revoke-all  drop every grant, session, access and refresh token
// Protected resource (outside the issuer path):
//   ANY  /api/<anything>     needs `Authorization: Bearer <access token>`; 200 JSON echo or 401
//   GET  /api/redirect-same?to=/api/x   302 to that path on the same origin
//   GET  /api/redirect-cross?to=/api/x  302 to that path on http://localhost:P (another origin)

import { createHash } from 'node:crypto';
import * as http from 'node:http';
import * as querystring from 'node:querystring';
import { parseArgs } from 'node:util';

// oidc-provider prints its "SHOULD change" notices with console.info, i.e. to stdout. The
// ready line must be the only stdout output, so every console method goes to stderr.
console.log = console.info = console.debug = (...args) => console.error(...args);

const { default: Provider, errors } = await import('oidc-provider');

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

function intOption(values, name, fallback) {
  const raw = values[name];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) {
    throw new Error(`--${name} must be a non-negative integer, got ${raw}`);
  }
  return n;
}

const { values: argv } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
    mode: { type: 'string', default: 'plain' },
    realm: { type: 'string', default: 'rrap' },
    'access-ttl': { type: 'string' },
    'refresh-ttl': { type: 'string' },
    'device-ttl': { type: 'string' },
    interval: { type: 'string' },
    'slow-down': { type: 'string' },
    'no-discovery-oidc': { type: 'boolean', default: false },
    'no-device': { type: 'boolean', default: false },
    'no-stdin-watch': { type: 'boolean', default: false },
  },
  strict: true,
});

const opts = {
  host: argv.host,
  port: intOption(argv, 'port', 0),
  mode: argv.mode,
  realm: argv.realm,
  accessTtl: intOption(argv, 'access-ttl', 60),
  refreshTtl: intOption(argv, 'refresh-ttl', 3600),
  deviceTtl: intOption(argv, 'device-ttl', 600),
  interval: intOption(argv, 'interval', 1),
  slowDown: intOption(argv, 'slow-down', 0),
  oidcDiscovery: !argv['no-discovery-oidc'],
  deviceFlow: !argv['no-device'],
  stdinWatch: !argv['no-stdin-watch'],
};
if (!['plain', 'keycloak'].includes(opts.mode)) {
  throw new Error(`--mode must be plain or keycloak, got ${opts.mode}`);
}
for (const name of ['accessTtl', 'refreshTtl', 'deviceTtl']) {
  // oidc-provider rejects a zero TTL (positiveInteger check) at token issue time.
  if (opts[name] < 1) throw new Error(`${name} must be at least 1 second`);
}

// ---------------------------------------------------------------------------------------------
// Lifetime: never outlive the test run
// ---------------------------------------------------------------------------------------------

function shutdown(code = 0) {
  // Open keep-alive sockets would keep server.close() waiting; the process is disposable.
  process.exit(code);
}
process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => shutdown(0));
if (opts.stdinWatch) {
  // The parent holds the write end of our stdin pipe; EOF means it is gone (even if SIGKILLed).
  process.stdin.on('end', () => shutdown(0));
  process.stdin.on('close', () => shutdown(0));
  process.stdin.on('error', () => shutdown(0));
  process.stdin.resume();
}

// ---------------------------------------------------------------------------------------------
// Storage adapter
// ---------------------------------------------------------------------------------------------

// oidc-provider's bundled MemoryAdapter is an LRU whose entries vanish at expiry, so a poll
// after the device code's lifetime finds nothing and gets `invalid_grant` ("device code not
// found") instead of RFC 8628's `expired_token`. This one keeps everything until the process
// ends; oidc-provider checks `exp` itself (with clockTolerance 0 here). Test runs are short,
// so unbounded growth is not a concern.
const store = new Map(); // `${model}:${id}` -> payload
const userCodeIndex = new Map(); // normalized user code -> DeviceCode id
const sessionUidIndex = new Map(); // Session uid -> Session id
const grantIndex = new Map(); // grantId -> Set of `${model}:${id}` keys bound to that grant

const GRANT_BOUND = new Set([
  'AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode',
  'BackchannelAuthenticationRequest', 'PreAuthorizedCode',
]);

class KeepExpiredAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, _expiresIn) {
    const key = this.key(id);
    store.set(key, payload);
    if (this.model === 'Session' && payload.uid) sessionUidIndex.set(payload.uid, id);
    if (payload.userCode) userCodeIndex.set(payload.userCode, id);
    if (GRANT_BOUND.has(this.model) && payload.grantId) {
      if (!grantIndex.has(payload.grantId)) grantIndex.set(payload.grantId, new Set());
      grantIndex.get(payload.grantId).add(key);
    }
  }

  async find(id) {
    return store.get(this.key(id));
  }

  async findByUserCode(userCode) {
    const id = userCodeIndex.get(userCode);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUid(uid) {
    const id = sessionUidIndex.get(uid);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const payload = store.get(this.key(id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    store.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    // Called once per token model; removing every member at once is equivalent and simpler.
    for (const key of grantIndex.get(grantId) ?? []) store.delete(key);
    grantIndex.delete(grantId);
  }
}

// Drops everything that lets a client keep calling the API or refresh: the server-side
// equivalent of an admin logging the user out / the SSO session ending.
function revokeAll() {
  let removed = 0;
  for (const key of [...store.keys()]) {
    const model = key.slice(0, key.indexOf(':'));
    if (['Grant', 'Session', 'AccessToken', 'RefreshToken', 'AuthorizationCode'].includes(model)) {
      store.delete(key);
      removed += 1;
    }
  }
  grantIndex.clear();
  sessionUidIndex.clear();
  return removed;
}

// Same normalization oidc-provider applies before storing a user code (upper-case, drop every
// non-word character), so "bcdf-ghjk", "BCDFGHJK" and " BCDF GHJK " all match.
function normalizeUserCode(input) {
  return String(input).toUpperCase().replace(/\W/g, '');
}

// ---------------------------------------------------------------------------------------------
// Counters for /__test/stats
// ---------------------------------------------------------------------------------------------

function emptyStats() {
  return {
    device_authorization: 0, // POSTs to the device authorization endpoint (any outcome)
    token: {}, // grant_type -> token endpoint requests (any outcome)
    token_errors: {}, // error code -> token endpoint error responses
    revocation: 0, // POSTs to the revocation endpoint
    discovery: 0, // requests to any /.well-known/ path (including 404s)
    api: { ok: 0, unauthorized: 0, redirect: 0 },
  };
}
let stats = emptyStats();
const bump = (obj, key) => { obj[key] = (obj[key] ?? 0) + 1; };

// ---------------------------------------------------------------------------------------------
// Provider configuration
// ---------------------------------------------------------------------------------------------

const PLAIN_ROUTES = {}; // oidc-provider defaults: /device/auth, /token, /token/revocation, ...
const KEYCLOAK_ROUTES = {
  authorization: '/protocol/openid-connect/auth',
  device_authorization: '/protocol/openid-connect/auth/device',
  code_verification: '/device',
  token: '/protocol/openid-connect/token',
  revocation: '/protocol/openid-connect/revoke',
  jwks: '/protocol/openid-connect/certs',
  userinfo: '/protocol/openid-connect/userinfo',
  introspection: '/protocol/openid-connect/token/introspect',
  end_session: '/protocol/openid-connect/logout',
};
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
const SUPPORTED_SCOPES = new Set(['openid', 'offline_access', 'profile', 'email', 'api']);

function providerConfiguration() {
  const grantTypes = ['authorization_code', 'refresh_token'];
  if (opts.deviceFlow) grantTypes.push(DEVICE_GRANT);
  const clientBase = {
    grant_types: grantTypes,
    response_types: ['code'],
    // native: loopback http redirect URIs are allowed and the rotated refresh token's TTL is
    // not capped to the previous one's remainder (oidc-provider's default for public web clients).
    application_type: 'native',
    redirect_uris: ['http://127.0.0.1/callback'],
  };

  return {
    adapter: KeepExpiredAdapter,
    clients: [
      { ...clientBase, client_id: 'client-tools', token_endpoint_auth_method: 'none' },
      {
        ...clientBase,
        client_id: 'confidential-client',
        client_secret: 'confidential-secret',
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    // Default is 15 s, which would keep a 2 s access token alive for 17 s.
    clockTolerance: 0,
    cookies: { keys: ['deviceauth-test-only-cookie-key'] },
    scopes: [...SUPPORTED_SCOPES],
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
    },
    features: {
      devInteractions: { enabled: true }, // login/consent pages for the browser test
      deviceFlow: { enabled: opts.deviceFlow },
      revocation: { enabled: true },
      introspection: { enabled: true },
    },
    // Any account id exists; the browser login page accepts any login too.
    async findAccount(_ctx, sub) {
      return {
        accountId: sub,
        async claims() {
          return {
            sub, name: sub, preferred_username: sub, email: `${sub}@example.test`, email_verified: true,
          };
        },
      };
    },
    // Default issues refresh tokens only with `offline_access`; Keycloak (and our users) get one
    // for every device login, so issue whenever the client may use the refresh_token grant.
    async issueRefreshToken(_ctx, client) {
      return client.grantTypeAllowed('refresh_token');
    },
    // Always rotate: reuse of a consumed refresh token then revokes the whole grant (built in).
    rotateRefreshToken: true,
    ttl: {
      AccessToken: opts.accessTtl,
      RefreshToken: opts.refreshTtl,
      DeviceCode: opts.deviceTtl,
      IdToken: Math.max(opts.accessTtl, 60),
    },
    routes: opts.mode === 'keycloak' ? KEYCLOAK_ROUTES : PLAIN_ROUTES,
  };
}

// ---------------------------------------------------------------------------------------------
// Provider middleware (runs inside the provider's Koa app, paths relative to the issuer)
// ---------------------------------------------------------------------------------------------

function routePath(provider, name) {
  // pathFor includes the issuer's path prefix; middleware sees paths with the prefix stripped.
  return provider.pathFor(name, { mountPath: '' });
}

function installMiddleware(provider) {
  const paths = {
    token: routePath(provider, 'token'),
    revocation: routePath(provider, 'revocation'),
    deviceAuthorization: opts.deviceFlow ? routePath(provider, 'device_authorization') : null,
  };

  // Counters. Outermost, so it also sees responses produced by the slow_down shortcut below.
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.method !== 'POST') return;
    if (ctx.path === paths.deviceAuthorization) {
      stats.device_authorization += 1;
    } else if (ctx.path === paths.revocation) {
      stats.revocation += 1;
    } else if (ctx.path === paths.token) {
      const grantType = ctx.state.grantType
        ?? ctx.oidc?.params?.grant_type ?? ctx.oidc?.body?.grant_type ?? '(none)';
      bump(stats.token, grantType);
      if (ctx.status >= 400 && ctx.body && typeof ctx.body === 'object' && ctx.body.error) {
        bump(stats.token_errors, ctx.body.error);
      }
    }
  });

  // --slow-down N: oidc-provider never answers slow_down by itself. We must decide before the
  // grant handler runs (it would otherwise consume an approved code), so read the form body
  // here and hand it on as `req.body`, which oidc-provider's body parser accepts as
  // "already parsed" (it logs a one-time warning about that to stderr).
  if (opts.slowDown > 0) {
    const pollsByCode = new Map();
    provider.use(async (ctx, next) => {
      if (ctx.method !== 'POST' || ctx.path !== paths.token
          || !ctx.is('application/x-www-form-urlencoded')) {
        return next();
      }
      const raw = await readBody(ctx.req);
      ctx.req.body = raw;
      const form = querystring.parse(raw.toString('utf8'));
      ctx.state.grantType = typeof form.grant_type === 'string' ? form.grant_type : undefined;
      if (form.grant_type === DEVICE_GRANT && typeof form.device_code === 'string') {
        const seen = (pollsByCode.get(form.device_code) ?? 0) + 1;
        pollsByCode.set(form.device_code, seen);
        if (seen <= opts.slowDown) {
          const err = new errors.SlowDown();
          ctx.status = 400;
          ctx.set('Cache-Control', 'no-store');
          ctx.body = { error: err.error, error_description: err.error_description };
          return undefined;
        }
      }
      return next();
    });
  }

  // Response decorations that oidc-provider does not produce itself.
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.method !== 'POST' || ctx.status !== 200 || !ctx.body || typeof ctx.body !== 'object') {
      return;
    }
    if (ctx.path === paths.deviceAuthorization && ctx.body.device_code) {
      // RFC 8628 §3.2: without `interval` clients must assume 5 s; tests want it short.
      ctx.body = { ...ctx.body, interval: opts.interval };
    } else if (opts.mode === 'keycloak' && ctx.path === paths.token && ctx.body.access_token) {
      // Keycloak reports the refresh token's remaining life; the RefreshToken entity is the one
      // just issued (new on rotation). 0 when none was issued, as Keycloak does.
      const rt = ctx.oidc?.entities?.RefreshToken;
      ctx.body = {
        ...ctx.body,
        refresh_expires_in: ctx.body.refresh_token && rt ? Math.max(0, rt.remainingTTL) : 0,
        'not-before-policy': 0,
      };
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Test hooks and protected resource (outside the provider, at the root of the port)
// ---------------------------------------------------------------------------------------------

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function sendJson(res, status, body, headers = {}) {
  const data = Buffer.from(JSON.stringify(body));
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': data.length,
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(data);
}

async function jsonBody(req) {
  const raw = await readBody(req);
  if (raw.length === 0) return {};
  return JSON.parse(raw.toString('utf8'));
}

async function findPendingDeviceCode(provider, userCode) {
  if (typeof userCode !== 'string' || !userCode) return { status: 400, error: 'user_code required' };
  const code = await provider.DeviceCode.findByUserCode(normalizeUserCode(userCode), {
    ignoreExpiration: true,
  });
  if (!code) return { status: 404, error: 'unknown user_code' };
  if (code.isExpired) return { status: 409, error: 'device code expired' };
  if (code.accountId || code.error || code.consumed) {
    return { status: 409, error: 'device code already approved, denied or used' };
  }
  return { code };
}

// Does what oidc-provider's verification page + login + consent would do for the device code
// (see its deviceUserFlowResponse): a Grant holding the requested scopes, and the account,
// grant and scope recorded on the DeviceCode so the next poll issues tokens. No Session is
// created, so `expiresWithSession` stays unset and the tokens live by their own TTLs.
async function approve(provider, userCode, accountId) {
  const found = await findPendingDeviceCode(provider, userCode);
  if (!found.code) return found;
  const { code } = found;
  const requested = String(code.params?.scope ?? '').split(' ').filter(Boolean);
  const allowed = requested.filter((s) => SUPPORTED_SCOPES.has(s));

  const grant = new provider.Grant({ accountId, clientId: code.clientId });
  if (allowed.length) grant.addOIDCScope(allowed.join(' '));
  const grantId = await grant.save();

  Object.assign(code, {
    accountId,
    grantId,
    scope: allowed.join(' '),
    authTime: Math.floor(Date.now() / 1000),
  });
  if (!code.scope) delete code.scope;
  await code.save();
  return { status: 200, body: { approved: true, account_id: accountId, scope: allowed.join(' ') } };
}

async function deny(provider, userCode) {
  const found = await findPendingDeviceCode(provider, userCode);
  if (!found.code) return found;
  const { code } = found;
  // The device_code grant turns a stored `error` into that error response on the next poll.
  Object.assign(code, {
    error: 'access_denied',
    errorDescription: 'End-User aborted interaction',
  });
  await code.save();
  return { status: 200, body: { denied: true } };
}


async function handleTestHook(provider, req, res, path) {
  const route = `${req.method} ${path}`;
  switch (route) {
    case 'GET /__test/stats':
      return sendJson(res, 200, stats);
    case 'POST /__test/reset':
      stats = emptyStats();
      return sendJson(res, 200, { reset: true });
    case 'POST /__test/revoke-all':
      return sendJson(res, 200, { revoked: revokeAll() });
    case 'POST /__test/approve':
    case 'POST /__test/deny': {
      let body;
      try {
        body = await jsonBody(req);
      } catch {
        return sendJson(res, 400, { error: 'invalid JSON body' });
      }
      const result = path === '/__test/approve'
        ? await approve(provider, body.user_code, String(body.account_id ?? 'alice'))
        : await deny(provider, body.user_code);
      if (result.status === 200) return sendJson(res, 200, result.body);
      return sendJson(res, result.status, { error: result.error });
    }
    default:
      return sendJson(res, 404, { error: `no test hook ${route}` });
  }
}

function redirect(res, location) {
  stats.api.redirect += 1;
  res.writeHead(302, { Location: location, 'Content-Length': 0 });
  res.end();
}

async function handleApi(provider, req, res, url) {
  if (url.pathname === '/api/redirect-same' || url.pathname === '/api/redirect-cross') {
    const to = url.searchParams.get('to') ?? '/api/me';
    if (!to.startsWith('/') || to.startsWith('//')) {
      return sendJson(res, 400, { error: '`to` must be an absolute path' });
    }
    // localhost vs 127.0.0.1: same port, different host, hence a different origin for clients.
    const base = url.pathname === '/api/redirect-same'
      ? `http://${req.headers.host}` : `http://localhost:${actualPort}`;
    return redirect(res, `${base}${to}`);
  }

  const body = await readBody(req);
  const auth = req.headers.authorization ?? '';
  const match = /^Bearer\s+(\S+)\s*$/i.exec(auth);
  let token;
  if (match) {
    token = await provider.AccessToken.find(match[1]);
  }
  // find() already rejects expired tokens (clockTolerance 0); isExpired double-checks.
  if (!token || token.isExpired) {
    stats.api.unauthorized += 1;
    return sendJson(res, 401, {
      error: 'invalid_token',
      error_description: match ? 'access token is invalid or expired' : 'no bearer token',
    }, { 'WWW-Authenticate': 'Bearer error="invalid_token"' });
  }
  stats.api.ok += 1;
  return sendJson(res, 200, {
    sub: token.accountId,
    client_id: token.clientId,
    scope: token.scope ?? '',
    method: req.method,
    path: url.pathname,
    query: url.search,
    body_sha256: createHash('sha256').update(body).digest('hex'),
    body_length: body.length,
    token_sha256: createHash('sha256').update(match[1]).digest('hex'),
  });
}

// ---------------------------------------------------------------------------------------------
// HTTP server: test routes at the root, the provider under the issuer's path
// ---------------------------------------------------------------------------------------------

let provider; // set once the port (and therefore the issuer) is known
let providerCallback;
let issuerPath = '';
let actualPort = 0;

async function route(req, res) {
  const url = new URL(req.url, `http://${req.headers.host ?? '127.0.0.1'}`);
  const path = url.pathname;

  if (path.includes('/.well-known/')) {
    stats.discovery += 1;
    if (!opts.oidcDiscovery && path.endsWith('/.well-known/openid-configuration')) {
      return sendJson(res, 404, { error: 'not_found' });
    }
  }
  if (path.startsWith('/__test/')) return handleTestHook(provider, req, res, path);
  if (path === '/api' || path.startsWith('/api/')) return handleApi(provider, req, res, url);

  if (issuerPath) {
    if (path !== issuerPath && !path.startsWith(`${issuerPath}/`)) {
      return sendJson(res, 404, { error: 'not_found' });
    }
    // Mount the provider the way Express/koa-mount would: strip the prefix from req.url and keep
    // the full URL in req.originalUrl, from which oidc-provider derives its mount path for URLs.
    req.originalUrl = req.url;
    req.url = req.url.slice(issuerPath.length) || '/';
  }
  return providerCallback(req, res);
}

const server = http.createServer((req, res) => {
  if (!providerCallback) {
    sendJson(res, 503, { error: 'starting' });
    return;
  }
  route(req, res).catch((err) => {
    console.error('request failed:', err);
    if (!res.headersSent) sendJson(res, 500, { error: 'server_error', error_description: String(err) });
    else res.destroy();
  });
});

// Node closes idle keep-alive connections after 5 s, which races a client polling every 6 s
// (interval + slow_down) into "connection reset". Keycloak (Quarkus: 30 min) and common proxies
// (60-75 s) keep them far longer, so the test server does too.
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;

server.on('error', (err) => {
  console.error('server error:', err);
  shutdown(1);
});

server.listen(opts.port, opts.host, () => {
  actualPort = server.address().port;
  const baseUrl = `http://${opts.host}:${actualPort}`;
  issuerPath = opts.mode === 'keycloak' ? `/auth/realms/${opts.realm}` : '';
  const issuer = `${baseUrl}${issuerPath}`;

  provider = new Provider(issuer, providerConfiguration());
  installMiddleware(provider);
  providerCallback = provider.callback();

  process.stdout.write(`${JSON.stringify({
    ready: true, port: actualPort, issuer, base_url: baseUrl,
  })}\n`);
});
