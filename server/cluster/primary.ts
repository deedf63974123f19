/**
 * The primary of --workers N: it serves nothing itself. It builds the sample catalog once (so
 * workers do not race to build it), forks the workers and hands each the settings, prints the
 * listening line once all of them listen, restarts a worker that dies (giving up, exit 1, when
 * they keep dying), drains them all on SIGTERM/SIGINT (a second signal cuts transfers) and exits
 * once every worker has, and answers a worker's /metrics with the sum over all of them.
 *
 * Each worker indexes the catalog itself rather than receiving the primary's index: indexing
 * reads only headers (bench comparison 7: milliseconds per archive), every worker needs its own
 * descriptors and handle cache anyway, and each worker's own watcher sees every change without
 * any relaying, so a worker restarted later is never out of date.
 */
import cluster, { type Worker } from 'node:cluster';
import { CosiError, type ErrorCode } from '../../shared/errors.js';
import { ensureSampleCatalog } from '../catalog/sample.js';
import type { ServerConfig } from '../config.js';
import { mergeSnapshots, renderFamilies, type FamilySnapshot } from '../metrics.js';
import type { ToPrimary, ToWorker } from './messages.js';

/** More unexpected worker exits than this within RESTART_WINDOW_MS stop the server. */
const MAX_RESTARTS = 5;
const RESTART_WINDOW_MS = 60_000;
/** The primary waits this long for the workers' metrics before summing what came. */
const SNAPSHOT_WAIT_MS = 2000;
/** A worker still running this long past the shutdown grace is killed. */
const EXIT_SLACK_MS = 5000;

export interface Listening {
  url: string;
  port: number;
  root: string;
  images: number;
}

interface Sum {
  from: Worker;
  askedId: number;
  waiting: Set<number>;
  snapshots: FamilySnapshot[][];
  timer: NodeJS.Timeout;
}

/**
 * Runs the workers until they have all stopped. `onListening` is called once, when every
 * worker listens. Resolves to the exit code; rejects with a worker's startup error.
 */
export async function runPrimary(config: ServerConfig, onListening: (info: Listening) => void): Promise<number> {
  const event = (e: Record<string, unknown>) => {
    if (!config.quiet) process.stderr.write(JSON.stringify({ time: new Date().toISOString(), ...e }) + '\n');
  };
  const hasRemotes = config.remotes.length > 0 || config.remoteList !== undefined;
  const root = config.root ?? (hasRemotes ? undefined : await ensureSampleCatalog(config.cacheDir, config.quiet ? undefined : event));
  const workerConfig: ServerConfig = { ...config, root };
  cluster.setupPrimary({ args: [] });

  const live = new Map<number, Worker>();
  const listeningIds = new Set<number>();
  const sums = new Map<number, Sum>();
  let nextSum = 0;
  let restarts = 0;
  const exits: number[] = [];
  let started = false;
  let stopping = false;
  let failure: CosiError | Error | undefined;
  let killTimer: NodeJS.Timeout | undefined;

  return new Promise<number>((resolve, reject) => {
    const finishSum = (id: number) => {
      const s = sums.get(id);
      if (!s) return;
      sums.delete(id);
      clearTimeout(s.timer);
      const merged = mergeSnapshots(s.snapshots);
      merged.push(
        { name: 'cosi_workers', help: 'Worker processes serving; the other series are their sums.', type: 'gauge', merge: 'max', samples: [{ labels: {}, value: live.size }] },
        { name: 'cosi_worker_restarts_total', help: 'Workers restarted after exiting unexpectedly.', type: 'counter', merge: 'sum', samples: [{ labels: {}, value: restarts }] },
      );
      tell(s.from, { type: 'metrics', id: s.askedId, text: renderFamilies(merged) });
    };

    const onMessage = (w: Worker, m: ToPrimary) => {
      switch (m.type) {
        case 'ready':
          return tell(w, { type: 'start', config: workerConfig });
        case 'listening':
          listeningIds.add(w.id);
          if (!started && listeningIds.size === config.workers) {
            started = true;
            onListening({ url: m.url, port: m.port, root: m.root, images: m.images });
          }
          return;
        case 'failed':
          failure ??= isErrorCode(m.code) ? new CosiError(m.code, m.message) : new Error(m.message);
          return stopAll(false);
        case 'metrics?': {
          const id = ++nextSum;
          const waiting = new Set([...live.values()].filter((x) => listeningIds.has(x.id)).map((x) => x.id));
          sums.set(id, { from: w, askedId: m.id, waiting, snapshots: [], timer: setTimeout(() => finishSum(id), SNAPSHOT_WAIT_MS) });
          for (const x of live.values()) if (waiting.has(x.id)) tell(x, { type: 'snapshot?', id });
          return;
        }
        case 'snapshot': {
          const s = sums.get(m.id);
          if (!s) return;
          s.snapshots.push(m.families);
          s.waiting.delete(w.id);
          if (s.waiting.size === 0) finishSum(m.id);
          return;
        }
      }
    };

    const fork = () => {
      const w = cluster.fork();
      live.set(w.id, w);
      w.on('message', (m: ToPrimary) => onMessage(w, m));
      w.on('exit', (code, signal) => onExit(w, code, signal));
      // A message to a worker that is just exiting fails (EPIPE): its 'exit' follows and is what counts.
      w.on('error', () => {});
    };

    const onExit = (w: Worker, code: number | null, signal: string | null) => {
      live.delete(w.id);
      listeningIds.delete(w.id);
      for (const [id, s] of sums) {
        if (s.waiting.delete(w.id) && s.waiting.size === 0) finishSum(id);
      }
      if (stopping || failure) {
        if (live.size === 0) {
          clearTimeout(killTimer);
          if (failure) reject(failure);
          else resolve(0);
        }
        return;
      }
      const now = Date.now();
      exits.push(now);
      while (exits.length > 0 && exits[0]! < now - RESTART_WINDOW_MS) exits.shift();
      const how = signal ? `signal ${signal}` : `exit code ${code}`;
      if (exits.length > MAX_RESTARTS) {
        failure = new Error(`workers keep exiting (${exits.length} in ${RESTART_WINDOW_MS / 1000} s, the last with ${how}); stopping the server`);
        return stopAll(false);
      }
      restarts++;
      event({ event: 'worker-exit', worker: w.id, pid: w.process.pid, code, signal, restarting: true });
      fork();
    };

    const stopAll = (now: boolean) => {
      stopping = true;
      for (const w of live.values()) tell(w, { type: 'stop', now });
      if (live.size === 0) {
        if (failure) reject(failure);
        else resolve(0);
        return;
      }
      // A worker that neither drains nor exits (it should not happen) must not keep the server up.
      clearTimeout(killTimer);
      killTimer = setTimeout(() => {
        for (const w of live.values()) w.process.kill('SIGKILL');
      }, (now ? 0 : config.shutdownGraceMs) + EXIT_SLACK_MS);
    };

    let signals = 0;
    const onSignal = (signal: string) => {
      if (++signals === 1) event({ event: 'shutdown', signal, graceMs: config.shutdownGraceMs, workers: live.size });
      stopAll(signals > 1);
    };
    process.on('SIGTERM', () => onSignal('SIGTERM'));
    process.on('SIGINT', () => onSignal('SIGINT'));

    for (let i = 0; i < config.workers; i++) fork();
  });
}

function tell(w: Worker, m: ToWorker): void {
  if (w.isConnected()) w.send(m, undefined, () => {});
}

function isErrorCode(code: string): code is ErrorCode {
  return code.startsWith('COSI_ERR_') && new CosiError(code as ErrorCode, '').errorClass !== undefined;
}
