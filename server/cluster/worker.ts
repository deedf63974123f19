/**
 * One worker of --workers N: the whole server (server.ts) with its own catalog, scanner and
 * watcher, listening on the port the primary shares. It stops when the primary says so, on its
 * own SIGTERM/SIGINT (a terminal's signal reaches the whole process group), and at once when
 * the primary is gone (the IPC channel closed), so no worker outlives it.
 */
import cluster from 'node:cluster';
import { CosiError, oneLine } from '../../shared/errors.js';
import type { ServerConfig } from '../config.js';
import { startServer, type RunningServer } from '../server.js';
import type { ToPrimary, ToWorker } from './messages.js';

/** A /metrics request waits this long for the primary's sum before answering with this process's own. */
const METRICS_WAIT_MS = 5000;

function send(m: ToPrimary): Promise<void> {
  return new Promise((resolve) => {
    if (!process.connected) return resolve();
    process.send!(m, undefined, {}, () => resolve());
  });
}

function nextMessage<T extends ToWorker['type']>(type: T): Promise<Extract<ToWorker, { type: T }>> {
  return new Promise((resolve) => {
    const on = (m: ToWorker) => {
      if (m.type !== type) return;
      process.off('message', on);
      resolve(m as Extract<ToWorker, { type: T }>);
    };
    process.on('message', on);
  });
}

/** Serve until told to stop; the exit code. */
export async function runWorker(): Promise<number> {
  const workerId = cluster.worker!.id;
  // Stopped before it started (the primary is stopping, or gone): nothing to drain.
  const early = (m: ToWorker) => m.type === 'stop' && process.exit(0);
  const gone = () => process.exit(0);
  process.on('message', early);
  process.once('disconnect', gone);
  const started = nextMessage('start');
  await send({ type: 'ready' });
  const { config } = await started;
  const asked = new Map<number, (text: string) => void>();
  let nextAsk = 0;
  let running: RunningServer | undefined;
  const metricsText = (): Promise<string> =>
    new Promise((resolve) => {
      const id = ++nextAsk;
      const timer = setTimeout(() => {
        asked.delete(id);
        resolve(running!.metrics.render());
      }, METRICS_WAIT_MS);
      asked.set(id, (text) => {
        clearTimeout(timer);
        asked.delete(id);
        resolve(text);
      });
      void send({ type: 'metrics?', id });
    });
  const stderrLine = (line: Record<string, unknown>) => void process.stderr.write(JSON.stringify({ ...line, worker: workerId }) + '\n');
  try {
    running = await startServer({ ...(config as ServerConfig), log: stderrLine, metricsText });
  } catch (err) {
    await send({ type: 'failed', code: err instanceof CosiError ? err.code : 'COSI_ERR_INTERNAL', message: oneLine(err) });
    process.disconnect();
    return 1;
  }
  const server = running;
  process.off('message', early);
  process.off('disconnect', gone);
  await send({ type: 'listening', url: server.url, port: server.port, root: server.root, images: server.catalog.size });

  await new Promise<void>((resolve) => {
    const stop = (now: boolean) => void server.close(now ? 0 : undefined).then(resolve);
    let signals = 0;
    process.on('SIGTERM', () => stop(++signals > 1));
    process.on('SIGINT', () => stop(++signals > 1));
    process.on('disconnect', () => stop(true));
    process.on('message', (m: ToWorker) => {
      if (m.type === 'stop') stop(m.now);
      else if (m.type === 'snapshot?') void send({ type: 'snapshot', id: m.id, families: server.metrics.snapshot() });
      else if (m.type === 'metrics') asked.get(m.id)?.(m.text);
    });
  });
  if (process.connected) process.disconnect();
  return 0;
}
