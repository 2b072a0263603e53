// Minimal OpenID provider for end-to-end tests (loopback only).
// Usage: node tests/oidc/provider.mjs [--port N]   (N = 0 picks a free port)
// Prints exactly one stdout line, `LISTENING http://127.0.0.1:<port>`, once it
// accepts connections; that URL is also the issuer. Everything else goes to stderr.
import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider, { errors } from 'oidc-provider';

// oidc-provider prints its NOTICEs with console.info (stdout): keep stdout clean.
console.log = console.info = console.error;

const portArg = process.argv.indexOf('--port');
const port = portArg === -1 ? 0 : Number(process.argv[portArg + 1]);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error('usage: provider.mjs --port <0-65535>');
  process.exit(2);
}

const RESOURCE = 'api://veneer';
const OPAQUE_RESOURCE = 'urn:veneer:opaque';
const RESOURCE_SCOPES = 'items:read telemetry:write';

// Fresh ES256 signing key per run; published (public part) at jwks_uri.
const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...privateKey.export({ format: 'jwk' }), alg: 'ES256', use: 'sig' };
jwk.kid = crypto.hash('sha256', JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }), 'base64url');

const server = http.createServer();
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    jwks: { keys: [jwk] },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    clients: [{
      client_id: 'iot-platform',
      client_secret: 'iot-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    clientDefaults: { id_token_signed_response_alg: 'ES256' },
    enabledJWA: { idTokenSigningAlgValues: ['ES256'] },
    clientBasedCORS: () => false,
    ttl: { ClientCredentials: 600 },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      // Opaque tokens (resource urn:veneer:opaque) are checked by RFC 7662 introspection.
      introspection: { enabled: true },
      revocation: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resourceIndicator) => {
          if (resourceIndicator === OPAQUE_RESOURCE) {
            return { scope: RESOURCE_SCOPES, audience: OPAQUE_RESOURCE, accessTokenTTL: 600, accessTokenFormat: 'opaque' };
          }
          if (resourceIndicator !== RESOURCE) {
            throw new errors.InvalidTarget();
          }
          return {
            scope: RESOURCE_SCOPES,
            audience: RESOURCE,
            accessTokenTTL: 600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256' } },
          };
        },
      },
    },
  });
  // Server errors (5xx) only; 4xx client errors stay quiet.
  provider.on('server_error', (_ctx, err) => console.error('oidc-provider server_error:', err));
  server.on('request', provider.callback());
  process.stdout.write(`LISTENING ${issuer}\n`);
});
server.on('error', (err) => {
  console.error(err);
  process.exit(1);
});

const shutdown = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
