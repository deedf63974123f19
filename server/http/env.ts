/**
 * Folder server/http/: HTTP mechanics below the routes: the per-request env and bookkeeping, what is refused
 * before any route (admission.ts: the connection cap, malformed headers), preconditions, range serving, error
 * bodies, ?decompress=1. Imports catalog/, shared/ and the server's leaf modules; routes/, app.ts and server.ts
 * import it.
 *
 * What every route gets: the Node request/response pair (byte endpoints
 * write to it directly), per-request bookkeeping for the log, and the
 * shared services.
 */
import type { HttpBindings } from '@hono/node-server';
import type { Context, Hono } from 'hono';
import type { Catalog } from '../catalog/catalog.js';
import type { Metrics } from '../metrics.js';
import type { Gate } from './gate.js';

export interface RequestStats {
  /** Route label for metrics and the log; set by the route that answered. */
  route: string;
  /** Body bytes handed to the response, counted by trackRequest when there is a log to write. */
  bytes: number;
  id?: string;
  /** Why a transfer ended early, if it did. */
  aborted?: string;
}

export type AppEnv = {
  Bindings: HttpBindings;
  Variables: { stats: RequestStats };
};

/** GET `path` on `app`, its requests counted under `route` unless the handler names a narrower one in `stats`. */
export function getCounted<P extends string>(
  app: Hono<AppEnv>,
  path: P,
  route: string,
  handler: (c: Context<AppEnv, P>, stats: RequestStats) => Response | Promise<Response>,
): void {
  app.get(path, (c) => {
    const stats = c.get('stats');
    stats.route = route;
    return handler(c, stats);
  });
}

export interface AppDeps {
  catalog: Catalog;
  metrics: Metrics;
  maxRanges: number;
  decompressGate: Gate;
  /** Checks an Authorization header; absent when the catalog is public. */
  authorize?: (header: string | undefined) => boolean;
  /** One JSON object per request; absent when quiet. */
  log?: (line: Record<string, unknown>) => void;
  /** Draining for shutdown: new requests get Connection: close. */
  draining?: () => boolean;
  /** /cosi/ of a remote image answers 307 to the origin instead of proxying. */
  redirect?: boolean;
  /** Base URL for absolute links (boot.ipxe, plan.txt); default from the request's Host. */
  publicUrl?: string;
  /** Scheme of this listener, for absolute links built from Host. */
  scheme?: 'http' | 'https';
  /** boot.ipxe settings; absent: the endpoint answers 404. */
  netboot?: NetbootConfig;
  /** --netboot-dir: files served at /netboot/NAME; absent: no /netboot/ route. */
  netbootDir?: string;
  /** /metrics text summed over every worker (--workers > 1); absent: this process's own. */
  metricsText?: () => Promise<string>;
}

export interface NetbootConfig {
  /** Installer kernel and initramfs: absolute URLs, or paths resolved on this server's base URL. */
  kernel: string;
  initrd: string;
  /** Extra kernel command line words. */
  cmdline?: string;
  /** cosi.disk= value. */
  disk?: string;
}
