/**
 * Folder server/cluster/: --workers N, several processes serving one port (node:cluster). The primary
 * (primary.ts) forks the workers, hands each the settings, restarts one that dies, drains them all on
 * SIGTERM and sums their /metrics; each worker (worker.ts) runs the whole server of server.ts with its
 * own catalog. Imports the server's top-level modules and shared/; only cli.ts imports it.
 *
 * The messages between them, over the cluster's IPC channel.
 */
import type { ServerConfig } from '../config.js';
import type { FamilySnapshot } from '../metrics.js';

export type ToWorker =
  /** The settings to serve with (the primary has resolved the root). */
  | { type: 'start'; config: ServerConfig }
  /** Stop accepting and drain; `now`: cut running transfers (a second signal). */
  | { type: 'stop'; now: boolean }
  /** Send this process's metrics for the sum asked for under `id`. */
  | { type: 'snapshot?'; id: number }
  /** The summed /metrics text this worker asked for. */
  | { type: 'metrics'; id: number; text: string };

export type ToPrimary =
  /** Listening for messages: send 'start' (one sent earlier could arrive before anyone listens). */
  | { type: 'ready' }
  | { type: 'listening'; url: string; port: number; root: string; images: number }
  /** Startup failed: the error's code (COSI_ERR_*) and one-line message, for the primary to exit with. */
  | { type: 'failed'; code: string; message: string }
  /** A /metrics request arrived here: send the totals of all workers. */
  | { type: 'metrics?'; id: number }
  | { type: 'snapshot'; id: number; families: FamilySnapshot[] };
