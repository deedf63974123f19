/**
 * A fault-injecting TCP proxy on 127.0.0.1 for resume tests. Requests pass
 * through untouched; the plan decides, per accepted connection (by index),
 * what happens to the response bytes: pass them, cut or reset the connection
 * after N bytes, stall after N bytes (socket left open, so only the client's
 * idle timeout helps), or trickle them one byte at a time.
 *
 * Bounded by construction: after `maxConnections` the proxy closes itself, so
 * a client that retries forever meets a refused connection, not a loop.
 */
import { createServer, connect, type Socket } from 'node:net';

export type Fault =
  | { kind: 'pass' }
  /** End the connection after this many response bytes (a dropped connection). */
  | { kind: 'cut'; afterBytes: number }
  /** Send a TCP RST after this many response bytes. */
  | { kind: 'reset'; afterBytes: number }
  /** Stop forwarding after this many response bytes but keep the socket open. */
  | { kind: 'stall'; afterBytes: number }
  /** After `afterBytes` (default 0) at full speed, one byte every `intervalMs`. */
  | { kind: 'trickle'; intervalMs: number; afterBytes?: number }
  /** Every byte, at about this rate (a slow link, not a fault: the end of the response is passed on). */
  | { kind: 'throttle'; bytesPerSecond: number };

/** Faults by connection index (missing entries pass), or a function of the index. */
export type FaultPlan = readonly Fault[] | ((index: number) => Fault);

export interface FaultProxy {
  url: string;
  port: number;
  /** Connections accepted so far. */
  readonly connections: number;
  /** The fault applied to each accepted connection, in order. */
  readonly applied: readonly Fault['kind'][];
  stop(): Promise<void>;
}

const TRICKLE_QUEUE_LIMIT = 64 * 1024;

export async function startFaultProxy(
  target: { host: string; port: number },
  plan: FaultPlan,
  opts: { maxConnections?: number } = {},
): Promise<FaultProxy> {
  const maxConnections = opts.maxConnections ?? 64;
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const applied: Fault['kind'][] = [];
  let accepted = 0;
  let closed = false;

  const pick = (i: number): Fault => (typeof plan === 'function' ? plan(i) : plan[i]) ?? { kind: 'pass' };

  const server = createServer((client) => {
    if (closed || accepted >= maxConnections) {
      client.destroy();
      shutdown();
      return;
    }
    const fault = pick(accepted++);
    applied.push(fault.kind);
    const upstream = connect(target.port, target.host);
    sockets.add(client);
    sockets.add(upstream);
    const drop = (s: Socket) => () => {
      sockets.delete(s);
    };
    client.on('close', drop(client));
    upstream.on('close', drop(upstream));
    // Either side failing ends both; errors are expected here (that is the point).
    const teardown = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', teardown);
    upstream.on('error', teardown);
    client.on('close', () => upstream.destroy());
    client.pipe(upstream);
    forward(fault, upstream, client, timers);
  });
  server.maxConnections = maxConnections + 1;

  function shutdown(): void {
    if (closed) return;
    closed = true;
    server.close();
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as { port: number }).port;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    get connections() {
      return accepted;
    },
    applied,
    async stop() {
      const done = new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
      closed = true;
      for (const t of timers) clearInterval(t);
      timers.clear();
      for (const s of sockets) s.destroy();
      await done;
    },
  };
}

/** Response bytes from upstream to client, shaped by the fault. */
function forward(fault: Fault, upstream: Socket, client: Socket, timers: Set<NodeJS.Timeout>): void {
  if (fault.kind === 'pass') {
    upstream.pipe(client);
    return;
  }
  let sent = 0;
  // Forward up to `limit` bytes with back-pressure; returns the part that did not fit.
  const pass = (chunk: Buffer, limit: number): Buffer => {
    const n = Math.max(0, Math.min(chunk.length, limit - sent));
    if (n > 0) {
      sent += n;
      if (!client.write(chunk.subarray(0, n))) {
        upstream.pause();
        client.once('drain', () => upstream.resume());
      }
    }
    return chunk.subarray(n);
  };

  switch (fault.kind) {
    case 'cut':
    case 'reset': {
      let done = false;
      const strike = () => {
        if (done) return;
        done = true;
        upstream.destroy();
        // Let the bytes already written reach the client first, then drop the connection.
        if (fault.kind === 'cut') client.end();
        else client.write('', () => client.resetAndDestroy());
      };
      if (fault.afterBytes <= 0) strike();
      upstream.on('data', (chunk: Buffer) => {
        if (done) return;
        pass(chunk, fault.afterBytes);
        if (sent >= fault.afterBytes) strike();
      });
      upstream.on('end', () => client.end());
      break;
    }
    case 'stall': {
      upstream.on('data', (chunk: Buffer) => {
        const rest = pass(chunk, fault.afterBytes);
        // Swallow the rest and stop reading: the client sees an open, silent socket.
        if (rest.length > 0 || sent >= fault.afterBytes) upstream.pause();
      });
      break;
    }
    case 'throttle': {
      upstream.on('data', (chunk: Buffer) => {
        pass(chunk, Infinity);
        upstream.pause();
        const timer = setTimeout(() => {
          timers.delete(timer);
          upstream.resume();
        }, (chunk.length / fault.bytesPerSecond) * 1000);
        timers.add(timer);
      });
      upstream.on('end', () => client.end());
      break;
    }
    case 'trickle': {
      const queue: Buffer[] = [];
      let queued = 0;
      let ended = false;
      const fast = fault.afterBytes ?? 0;
      const timer = setInterval(() => {
        const head = queue[0];
        if (!head) {
          if (ended) {
            clearInterval(timer);
            timers.delete(timer);
            client.end();
          }
          return;
        }
        client.write(head.subarray(0, 1));
        queued--;
        if (head.length === 1) queue.shift();
        else queue[0] = head.subarray(1);
        if (queued < TRICKLE_QUEUE_LIMIT) upstream.resume();
      }, fault.intervalMs);
      timers.add(timer);
      client.on('close', () => {
        clearInterval(timer);
        timers.delete(timer);
      });
      upstream.on('data', (chunk: Buffer) => {
        const rest = pass(chunk, fast);
        if (rest.length === 0) return;
        queue.push(rest);
        queued += rest.length;
        if (queued >= TRICKLE_QUEUE_LIMIT) upstream.pause();
      });
      upstream.on('end', () => (ended = true));
      break;
    }
  }
}
