/**
 * The server under comparison 8 (bench/soak.ts): cosi-server started in a
 * process of its own, forked with an IPC channel, that on 'probe' collects
 * garbage and reports what it holds: RSS, live Readable streams (ReadStreams
 * included), 'close' listeners on the archive's cached handle, open
 * descriptors and the transfer buffers. On 'stop' it closes and exits.
 *
 *   fork('dist/bench/soak-server.js', [ROOT, ID, ...server flags as JSON])
 */
import type { EventEmitter } from 'node:events';
import { readdirSync } from 'node:fs';
import { Readable } from 'node:stream';
import v8 from 'node:v8';
import vm from 'node:vm';
import { startServer, type StartOptions } from '../server/server.js';
import { transferBufferBytes } from '../server/http/fd-body.js';

export interface Probe {
  rss: number;
  heapUsed: number;
  external: number;
  readables: number;
  closeListeners: number;
  fds: number;
  transferBuffers: number;
}

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
process.removeAllListeners('warning'); // v8.queryObjects is experimental, and says so on every call

const [root, id, extra] = process.argv.slice(2);
const srv = await startServer({ root: root!, port: 0, log: false, watch: false, rescanSeconds: 0, ...(JSON.parse(extra ?? '{}') as StartOptions) });

async function probe(): Promise<Probe> {
  // Twice, a turn apart: finalizers of the first pass free what the second collects.
  gc();
  await new Promise((r) => setImmediate(r));
  gc();
  const a = await srv.catalog.open(id!);
  // A FileHandle is an EventEmitter at run time, though its type does not say so.
  const closeListeners = (a?.fh as unknown as EventEmitter | undefined)?.listenerCount('close') ?? -1;
  await a?.release();
  const m = process.memoryUsage();
  return {
    rss: m.rss,
    heapUsed: m.heapUsed,
    external: m.external,
    readables: v8.queryObjects(Readable, { format: 'count' }) as number,
    closeListeners,
    fds: readdirSync('/proc/self/fd').length,
    transferBuffers: transferBufferBytes(),
  };
}

process.on('message', (m) => {
  if (m === 'probe') void probe().then((p) => process.send!({ probe: p }));
  else if (m === 'stop') void srv.close(0).then(() => process.exit(0));
});
process.send!({ url: srv.url });
