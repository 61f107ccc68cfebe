// A small OpenID Provider for portcullis e2e tests, built on the certified `oidc-provider`.
// usage: node idp.mjs config.json
//   {port, host, issuer, users: [{username, password, email, groups, firstName, lastName}],
//    clients: [{clientId, secret, redirectUris, tokenEndpointAuthMethod, serviceAccounts,
//               postLogoutRedirectUris}], ttl: {AccessToken: 300, ...},
//    rpInitiatedLogout: true (false: no end_session_endpoint in discovery)}
// Login form: /interaction/<uid> with inputs `username` / `password` (passwords checked);
// consent is granted automatically. PKCE (S256) is required for every authorization request.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const users = new Map(cfg.users.map((u) => [u.username, u]));

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: `e2e-${randomBytes(4).toString('hex')}`, use: 'sig', alg: 'RS256' };

const claimsOf = (u) => ({
  sub: u.username,
  email: u.email,
  email_verified: u.emailVerified ?? true,
  preferred_username: u.username,
  name: [u.firstName, u.lastName].filter(Boolean).join(' ') || u.username,
  given_name: u.firstName,
  family_name: u.lastName,
  groups: u.groups || [],
});

const ALL_SCOPES = 'openid email profile groups offline_access';

const provider = new Provider(cfg.issuer, {
  clients: cfg.clients.map((c) => ({
    client_id: c.clientId,
    client_secret: c.secret,
    redirect_uris: c.redirectUris || [],
    post_logout_redirect_uris: c.postLogoutRedirectUris || [],
    response_types: (c.redirectUris || []).length ? ['code'] : [],
    grant_types: [
      ...((c.redirectUris || []).length ? ['authorization_code', 'refresh_token'] : []),
      ...(c.serviceAccounts ? ['client_credentials'] : []),
    ],
    token_endpoint_auth_method: c.tokenEndpointAuthMethod || 'client_secret_basic',
  })),
  jwks: { keys: [jwk] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  pkce: { required: () => true },
  // groups & co. go into the ID token whatever the access token carries (like Keycloak's mapper)
  conformIdTokenClaims: false,
  claims: {
    openid: ['sub', 'groups'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username', 'given_name', 'family_name'],
    groups: ['groups'],
  },
  scopes: ALL_SCOPES.split(' '),
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    rpInitiatedLogout: { enabled: cfg.rpInitiatedLogout ?? true },
  },
  issueRefreshToken: async (ctx, client, code) => client.grantTypeAllowed('refresh_token'),
  ttl: { AccessToken: 300, IdToken: 300, Interaction: 600, Session: 3600, Grant: 3600,
    AuthorizationCode: 60, RefreshToken: 86400, ClientCredentials: 300, ...(cfg.ttl || {}) },
  findAccount: async (ctx, id) => {
    const u = users.get(id);
    return u && { accountId: id, claims: async () => claimsOf(u) };
  },
  // auto-consent: every requested scope/claim is granted
  loadExistingGrant: async (ctx) => {
    const { client, session, params } = ctx.oidc;
    if (!session?.accountId) return undefined;
    const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
    let grant = grantId && (await provider.Grant.find(grantId));
    if (!grant) grant = new provider.Grant({ clientId: client.clientId, accountId: session.accountId });
    grant.addOIDCScope(String(params?.scope || 'openid'));
    await grant.save();
    return grant;
  },
  renderError: async (ctx, out) => {
    ctx.type = 'html';
    ctx.body = `<!doctype html><title>oidc error</title><h1>${esc(out.error)}</h1><p>${esc(out.error_description || '')}</p>`;
  },
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));

function esc(s) {
  return String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));
}

function loginPage(uid, error) {
  return `<!doctype html><html><head><title>Sign in</title></head><body>
<h1>Sign in to e2e IdP</h1>${error ? `<p id="error">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
<input id="username" name="username" placeholder="username" autofocus>
<input id="password" name="password" type="password" placeholder="password">
<button id="kc-login" type="submit">Sign in</button>
</form></body></html>`;
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return Object.fromEntries(new URLSearchParams(body));
}

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt } = details;
  if (req.method === 'POST' && req.url.endsWith('/login')) {
    const form = await readForm(req);
    const u = users.get(form.username);
    if (!u || u.password !== form.password) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(loginPage(uid, 'Invalid username or password.'));
    }
    return provider.interactionFinished(req, res, { login: { accountId: u.username } },
      { mergeWithLastSubmission: false });
  }
  if (prompt.name === 'login') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    return res.end(loginPage(uid));
  }
  // consent (normally skipped by loadExistingGrant): grant what was asked
  const grant = details.grantId ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
  grant.addOIDCScope(String(details.params.scope || 'openid'));
  for (const c of prompt.details.missingOIDCClaims || []) grant.addOIDCClaims([c]);
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

const callback = provider.callback();
const server = createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((err) => {
      console.error('interaction error', err);
      if (!res.headersSent) res.writeHead(400, { 'content-type': 'text/plain' });
      res.end(`interaction error: ${err.message}`);
    });
    return;
  }
  callback(req, res);
});
server.listen(cfg.port, cfg.host || '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${cfg.host || '127.0.0.1'}:${cfg.port}, issuer ${cfg.issuer}`);
});
const stop = () => { server.close(() => process.exit(0)); server.closeAllConnections(); setTimeout(() => process.exit(0), 2000).unref(); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
