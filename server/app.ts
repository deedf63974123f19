/**
 * The HTTP application: a few middlewares (request log and metrics, method
 * check, bearer auth) in front of one small router per concern.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Hono } from 'hono';
import type { AppDeps, AppEnv, RequestStats } from './http/env.js';
import { describeError, errorBody } from './http/errors.js';
import type { Metrics } from './metrics.js';
import { blobRoutes } from './routes/blobs.js';
import { imageRoutes } from './routes/images.js';
import { opsRoutes } from './routes/ops.js';
import { pageRoutes } from './routes/page.js';
import { rawRoutes } from './routes/raw.js';

/** The server is read-only: everything else is 405 everywhere. */
const ALLOWED = new Set(['GET', 'HEAD']);

/** cosi_http_requests_total samples by route and status, looked up without building label keys. */
const requestCounters = new WeakMap<Metrics, Map<string, { value: number }>>();

function requestCounter(metrics: Metrics, route: string, status: number): { value: number } {
  let byKey = requestCounters.get(metrics);
  if (!byKey) requestCounters.set(metrics, (byKey = new Map()));
  const key = `${status} ${route}`;
  let s = byKey.get(key);
  if (!s) byKey.set(key, (s = metrics.series('cosi_http_requests_total', { route, status: String(status) })));
  return s;
}

/**
 * The request's bookkeeping: counted and logged once the response closes, so
 * byte endpoints (which write to the socket themselves) report the real
 * outcome. Shared by the app and the raw fast path (fast-raw.ts).
 */
export function trackRequest(deps: AppDeps, incoming: IncomingMessage, outgoing: ServerResponse): RequestStats {
  const stats: RequestStats = { route: 'unknown', bytes: 0 };
  const t0 = deps.log ? performance.now() : 0;
  const done = (): void => {
    const status = outgoing.statusCode;
    requestCounter(deps.metrics, stats.route, status).value++;
    deps.log?.({
      time: new Date().toISOString(),
      method: incoming.method,
      url: incoming.url,
      status,
      route: stats.route,
      id: stats.id,
      bytes: stats.bytes,
      ms: Math.round((performance.now() - t0) * 10) / 10,
      range: incoming.headers.range,
      remote: incoming.socket.remoteAddress,
      complete: outgoing.writableFinished,
      // Unset only when the connection closed while the transfer waited on a read.
      aborted: stats.aborted ?? (outgoing.writableFinished ? undefined : 'connection-closed'),
    });
  };
  // A transfer cut short learns why (stats.aborted) in the promise chain that the 'close' event
  // starts: log after it has run.
  outgoing.once('close', () => (outgoing.writableFinished ? done() : setImmediate(done)));
  if (deps.draining?.()) outgoing.setHeader('Connection', 'close');
  return stats;
}

export function createApp(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.use('*', async (c, next) => {
    c.set('stats', trackRequest(deps, c.env.incoming, c.env.outgoing));
    await next();
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

  app.notFound((c) => c.json(errorBody('NOT_FOUND', `nothing at ${c.req.path}`), 404));
  app.onError((err, c) => {
    const d = describeError(err);
    if (d.status >= 500 && d.body.error.code === 'INTERNAL') deps.log?.({ time: new Date().toISOString(), event: 'error', message: String((err as Error)?.stack ?? err) });
    return c.json(d.body, d.status as 500, d.headers);
  });
  return app;
}
