/**
 * Folder server/ (cosi-server): config and process wiring at the top; routes/ (one router per endpoint family)
 * over http/ over catalog/; imports shared/, never client/.
 *
 * The HTTP application: a few middlewares (request log and metrics, method
 * check, bearer auth) in front of one small router per concern.
 */
import { Hono } from 'hono';
import type { AppDeps, AppEnv } from './http/env.js';
import { describeError, errorBody } from './http/errors.js';
import { blobRoutes } from './routes/blobs.js';
import { netbootFileRoutes } from './netboot.js';
import { imageRoutes } from './routes/images.js';
import { opsRoutes } from './routes/ops.js';
import { pageRoutes } from './routes/page.js';
import { rawRoutes } from './routes/raw.js';
import { trackRequest } from './http/track.js';

/** The server is read-only: everything else is 405 everywhere. */
const ALLOWED = new Set(['GET', 'HEAD']);

export function createApp(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.use('*', async (c, next) => {
    c.set('stats', trackRequest(deps, c.env.incoming, c.env.outgoing));
    await next();
    // HEAD must carry GET's Content-Length (RFC 9110 §9.3.2). Hono answers HEAD by running the GET
    // handler and dropping its body, and node-server counts only a body it sends: so every body
    // built here (JSON, text, HTML; byte endpoints write their own) gets its length now. A GET gets
    // it from node-server already: only HEAD pays for the copy.
    if (c.req.method !== 'HEAD') return;
    const res = c.res;
    if (res.body === null || res.headers.has('content-length') || c.env.outgoing.headersSent) return;
    const bytes = new Uint8Array(await res.arrayBuffer());
    const headers = new Headers(res.headers);
    headers.set('Content-Length', String(bytes.length));
    c.res = new Response(bytes, { status: res.status, headers });
  });

  app.use('*', async (c, next) => {
    if (!ALLOWED.has(c.req.method)) {
      c.get('stats').route = 'method';
      return c.json(errorBody('METHOD_NOT_ALLOWED', `${c.req.method} is not allowed: this server is read-only (GET, HEAD)`), 405, { Allow: 'GET, HEAD' });
    }
    await next();
  });

  if (deps.authorize) {
    const authorize = deps.authorize;
    app.use('*', async (c, next) => {
      if (c.req.path === '/healthz' || authorize(c.req.header('authorization'))) return next();
      c.get('stats').route = 'auth';
      return c.json(errorBody('UNAUTHORIZED', 'a valid bearer token is required (Authorization: Bearer TOKEN)'), 401, {
        'WWW-Authenticate': 'Bearer realm="cosi"',
      });
    });
  }

  app.route('/', opsRoutes(deps));
  app.route('/', pageRoutes(deps));
  app.route('/', imageRoutes(deps));
  app.route('/', blobRoutes(deps));
  app.route('/', rawRoutes(deps));
  app.route('/', netbootFileRoutes(deps));

  app.notFound((c) => c.json(errorBody('NOT_FOUND', `nothing at ${c.req.path}`), 404));
  app.onError((err, c) => {
    const d = describeError(err);
    if (d.status >= 500 && d.body.error.code === 'INTERNAL') deps.log?.({ time: new Date().toISOString(), event: 'error', message: String((err as Error)?.stack ?? err) });
    return c.json(d.body, d.status as 500, d.headers);
  });
  return app;
}
