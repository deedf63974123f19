/**
 * /cosi/ GET and HEAD of a local archive, answered without the router: at
 * thousands of small ranges a second, building a fetch Request, a Hono
 * context and the middleware chain per request cost more than the serving.
 * Everything this path does not handle exactly as the app would (another
 * method or prefix, auth failing, an id that is not a local file, remote and
 * --redirect images) returns false and goes through the app unchanged. The
 * bookkeeping (log line, metrics, draining) and the byte serving are the
 * app's own functions, so both paths answer alike.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { trackRequest } from '../app.js';
import { rawBody, rawId } from '../routes/raw.js';
import type { AppDeps, RequestStats } from './env.js';
import { describeError, notFound } from './errors.js';
import { transferTo } from './transfer.js';

const PREFIX = '/cosi/';

export function rawFastPath(deps: AppDeps): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    const url = req.url;
    if (url === undefined || !url.startsWith(PREFIX) || (req.method !== 'GET' && req.method !== 'HEAD')) return false;
    if (deps.authorize) {
      const auth = req.headers.authorization;
      if (!deps.authorize(Array.isArray(auth) ? auth.join(', ') : auth)) return false;
    }
    const q = url.indexOf('?');
    const id = rawId(url.slice(PREFIX.length, q < 0 ? undefined : q));
    if (id === undefined || !deps.catalog.hasLocal(id)) return false;
    const stats = trackRequest(deps, req, res);
    stats.route = 'raw';
    stats.id = id;
    void serve(deps, req, res, stats, id).catch((err: unknown) => {
      if (res.headersSent) return void res.destroy();
      const d = describeError(err);
      if (d.body.error.code === 'INTERNAL') deps.log?.({ time: new Date().toISOString(), event: 'error', message: String((err as Error)?.stack ?? err) });
      const text = JSON.stringify(d.body);
      res.writeHead(d.status, { ...d.headers, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
      res.end(text);
    });
    return true;
  };
}

async function serve(deps: AppDeps, req: IncomingMessage, res: ServerResponse, stats: RequestStats, id: string): Promise<void> {
  const a = await deps.catalog.open(id);
  if (!a) throw notFound(`no archive at ${PREFIX}${id}.cosi`);
  await transferTo(req, res, stats, deps, rawBody(a), a);
}
