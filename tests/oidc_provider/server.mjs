// A real OpenID Provider (panva/oidc-provider) for the bff test suite.
//
// Usage: OP_CONFIG=/path/to/config.json node server.mjs   (or: node server.mjs config.json)
// Prints "READY <issuer>" on stdout once listening; exits cleanly on SIGTERM/SIGINT.
//
// Besides the provider itself, a few test-only admin endpoints live under /__test/
// (see handleAdmin below). Everything is kept in memory: each process is a fresh OP.

import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';

import Provider from 'oidc-provider';

const configPath = process.env.OP_CONFIG || process.argv[2];
if (!configPath) {
  console.error('server.mjs: set OP_CONFIG (or pass the config path as first argument)');
  process.exit(2);
}
const cfg = JSON.parse(readFileSync(configPath, 'utf8'));

const port = Number(cfg.port);
if (!Number.isInteger(port) || port <= 0) {
  console.error('server.mjs: config "port" must be a positive integer');
  process.exit(2);
}
const issuer = cfg.issuer || `http://127.0.0.1:${port}`;

// Values that /__test/config may change at runtime: the ttl functions read them on every use.
const settings = {
  access_token_ttl: cfg.access_token_ttl ?? 300,
  id_token_ttl: cfg.id_token_ttl ?? 3600,
  refresh_token_ttl: cfg.refresh_token_ttl ?? 86400,
  session_ttl: cfg.session_ttl ?? 86400,
  rotate_refresh_token: cfg.rotate_refresh_token ?? false,
};

// ---------------------------------------------------------------------------------------------
// Signing keys, generated fresh at every start.
const signingAlgs = cfg.signing_algs ?? ['RS256'];
const keys = signingAlgs.map((alg) => {
  let pair;
  if (alg === 'RS256' || alg === 'PS256') {
    pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
  } else if (alg === 'ES256') {
    pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  } else {
    console.error(`server.mjs: unsupported signing alg ${alg} (use RS256, PS256 or ES256)`);
    process.exit(2);
  }
  return {
    ...pair.privateKey.export({ format: 'jwk' }),
    kid: `${alg.toLowerCase()}-${randomUUID().slice(0, 8)}`,
    alg,
    use: 'sig',
  };
});

// ---------------------------------------------------------------------------------------------
// Stats, counted from provider events.
function emptyStats() {
  return {
    grants: { authorization_code: 0, refresh_token: 0 },
    grant_errors: [],
    revocations: 0,
    end_sessions: 0,
    backchannel: [],
  };
}
let stats = emptyStats();

function recordBackchannel(clientId, sub, sid, err) {
  const entry = { client_id: clientId, sub, sid: sid ?? null, ok: !err };
  if (err) entry.error = err.message;
  stats.backchannel.push(entry);
  return entry;
}

// ---------------------------------------------------------------------------------------------
// Provider configuration.
async function findAccount(ctx, sub) {
  return {
    accountId: sub,
    async claims() {
      return {
        sub,
        name: `User ${sub}`,
        email: `${sub}@example.test`,
        email_verified: true,
      };
    },
  };
}

// Auto-grant whatever OIDC scopes/claims the request asks for, so the consent prompt never shows
// (recipes/skip_consent.md). Note: oidc-provider strips `offline_access` from authorization
// requests that lack prompt=consent before this runs (lib/actions/authorization/scopes.js), so
// it is only granted when the RP sends prompt=consent; refresh tokens are issued regardless (see
// issueRefreshToken below).
async function loadExistingGrant(ctx) {
  const { oidc } = ctx;
  const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
  let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
  if (!grant) {
    grant = new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });
  }
  const scope = [...oidc.requestParamOIDCScopes].join(' ');
  if (scope) grant.addOIDCScope(scope);
  const claims = [...(oidc.requestParamClaims ?? [])];
  if (claims.length) grant.addOIDCClaims(claims);
  await grant.save();
  return grant;
}

const clientDefaults = {
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
  id_token_signed_response_alg: signingAlgs[0],
};

const provider = new Provider(issuer, {
  clients: cfg.clients ?? [],
  clientDefaults,
  jwks: { keys },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  claims: {
    acr: null,
    sid: null,
    auth_time: null,
    iss: null,
    openid: ['sub'],
    profile: ['name'],
    email: ['email', 'email_verified'],
  },
  scopes: ['openid', 'offline_access', 'profile', 'email'],
  responseTypes: ['code'],
  findAccount,
  loadExistingGrant,
  // Issue a refresh token whenever the client may use the refresh_token grant, with or without
  // offline_access (without it the token is bound to the OP session, like an "online" token).
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => Boolean(settings.rotate_refresh_token),
  // Put scope-requested claims (name, email...) in the ID token too, as most real OPs do.
  conformIdTokenClaims: cfg.conform_id_token_claims ?? false,
  clockTolerance: cfg.clock_tolerance ?? 0,
  pkce: { required: () => true },
  ttl: {
    AccessToken: () => settings.access_token_ttl,
    AuthorizationCode: 60,
    IdToken: () => settings.id_token_ttl,
    RefreshToken: () => settings.refresh_token_ttl,
    Session: () => settings.session_ttl,
    Interaction: 600,
    Grant: () => Math.max(settings.refresh_token_ttl, settings.session_ttl),
  },
  features: {
    devInteractions: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    backchannelLogout: { enabled: true },
  },
  // oidc-provider's outgoing requests refuse loopback/private addresses (SSRF protection). Test
  // back-channel receivers live on 127.0.0.1, so drop that dispatcher.
  fetch: (url, options) => {
    delete options.dispatcher;
    return globalThis.fetch(url, options);
  },
});

provider.on('grant.success', (ctx) => {
  const type = ctx.oidc.params.grant_type;
  stats.grants[type] = (stats.grants[type] ?? 0) + 1;
});
provider.on('grant.error', (ctx, err) => {
  stats.grant_errors.push({
    error: err.error ?? err.message,
    error_description: err.error_description ?? null,
    grant_type: ctx.oidc?.params?.grant_type ?? null,
  });
});
provider.on('end_session.success', () => { stats.end_sessions += 1; });
provider.on('backchannel.success', (ctx, client, sub, sid) => recordBackchannel(client.clientId, sub, sid));
provider.on('backchannel.error', (ctx, err, client, sub, sid) => recordBackchannel(client.clientId, sub, sid, err));
provider.on('server_error', (ctx, err) => console.error('server_error', err));

// There is no revocation.success event: count answered revocation requests instead.
provider.use(async (ctx, next) => {
  await next();
  if (ctx.oidc?.route === 'revocation' && ctx.status === 200) stats.revocations += 1;
});

// ---------------------------------------------------------------------------------------------
// Test-only admin endpoints.
async function tokenActive(value) {
  for (const model of [provider.RefreshToken, provider.AccessToken]) {
    const token = await model.find(value);
    if (!token) continue;
    if (!token.isValid) return false; // expired or consumed
    if (token.grantId) {
      const grant = await provider.Grant.find(token.grantId);
      if (!grant || grant.clientId !== token.clientId || grant.accountId !== token.accountId) return false;
    }
    return true;
  }
  return false;
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : {};
}

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

const ttlKeys = ['access_token_ttl', 'id_token_ttl', 'refresh_token_ttl', 'session_ttl'];

async function handleAdmin(req, res) {
  const path = new URL(req.url, issuer).pathname;
  const route = `${req.method} ${path}`;
  switch (route) {
    case 'GET /__test/stats':
      return send(res, 200, stats);
    case 'POST /__test/reset':
      stats = emptyStats();
      return send(res, 200, stats);
    case 'POST /__test/config': {
      const body = await readJson(req);
      for (const [key, value] of Object.entries(body)) {
        if (ttlKeys.includes(key) && Number.isInteger(value) && value > 0) {
          settings[key] = value;
        } else if (key === 'rotate_refresh_token' && typeof value === 'boolean') {
          settings[key] = value;
        } else {
          return send(res, 400, { error: `unsupported setting ${key}=${JSON.stringify(value)}` });
        }
      }
      return send(res, 200, settings);
    }
    case 'POST /__test/token-active': {
      const { token } = await readJson(req);
      return send(res, 200, { active: await tokenActive(token) });
    }
    case 'POST /__test/backchannel-logout': {
      const { client_id: clientId, sub, sid } = await readJson(req);
      const client = await provider.Client.find(String(clientId));
      if (!client) return send(res, 404, { ok: false, error: `unknown client ${clientId}` });
      if (!client.backchannelLogoutUri) {
        return send(res, 400, { ok: false, error: `client ${clientId} has no backchannel_logout_uri` });
      }
      let err;
      try {
        await client.backchannelLogout(sub, sid);
      } catch (e) {
        err = e;
      }
      const entry = recordBackchannel(client.clientId, sub, sid, err);
      return send(res, err ? 500 : 200, entry);
    }
    default:
      return send(res, 404, { error: `no such test endpoint: ${route}` });
  }
}

// ---------------------------------------------------------------------------------------------
const callback = provider.callback();
const server = http.createServer((req, res) => {
  if (req.url.startsWith('/__test/')) {
    handleAdmin(req, res).catch((e) => send(res, 500, { error: String(e?.message ?? e) }));
    return;
  }
  callback(req, res);
});

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
// Don't outlive the test process that started us (e.g. when it is killed by a timeout).
const parentPid = process.ppid;
setInterval(() => { if (process.ppid !== parentPid) shutdown(); }, 1000).unref();

// Static clients are only validated when first used: check them now so a bad config fails fast.
for (const { client_id: clientId } of cfg.clients ?? []) {
  try {
    if (!(await provider.Client.find(String(clientId)))) throw new Error('not found');
  } catch (e) {
    console.error(`server.mjs: invalid client ${clientId}: ${e.error_description ?? e.message}`);
    process.exit(1);
  }
}

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`READY ${issuer}\n`);
});
