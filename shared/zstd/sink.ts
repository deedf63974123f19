/**
 * The bulk decoder: a Writable of compressed bytes whose decoded bytes go to
 * an async callback, decoded in a worker thread (worker.ts) into a ring of
 * shared buffers that are reused once the callback settles.
 *
 * Why a second engine: on the main thread, node:zlib allocates a fresh output
 * buffer per chunk and decodes in one thread-pool round trip per chunk; for a
 * 1 GiB image that was as much work again as the decoding (page faults on
 * fresh memory, major GCs driven by external memory) and it competed with
 * hashing and writing for the same thread. In a worker, decoding, hashing and
 * writing overlap, and nothing is allocated per chunk. The price is the lease:
 * a chunk handed to onData is only valid until its promise settles, so this
 * serves writers and hashers; consumers that keep buffers use decoder.ts.
 *
 * A writer can skip the lease and the ring: given a WriteTarget (an fd and a
 * position), the worker writes each piece itself right after decoding it,
 * while it is still in that core's cache, and this thread only counts. The
 * kernel's copy into the page cache of a 1 GiB root took 0.41 s of CPU on
 * the main thread, reading slots another core had just filled, and 0.06 s
 * in the worker (perf, cpu-clock samples). It also leaves the main thread
 * the network and the SHA-384, and saves the 8 MiB ring.
 *
 * Same rules as the stream engine (policy.ts): the frame scanner runs here,
 * before any byte reaches the worker, and every decoded byte is counted here
 * before onData sees it (with a target, the worker stops at the expected size
 * itself, and the counts here check each frame).
 */
import { Writable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import * as zlib from 'node:zlib';
import { CosiError, type ErrorCode } from '../errors.js';
import type { WriteReport, WriteTarget } from '../transport/positional-write.js';
import { releaseChunk } from '../transport/source.js';
import { hasNodeZstd, zstdError } from './backends.js';
import { FrameScanner, type FrameHeader, type ScanEvent, type ZstdBackend } from './frame.js';
import { DecodePolicy, zstdBackend, type ZstdDecoderOptions } from './policy.js';
import type { FromWorker, ToWorker } from './worker.js';

export type ZstdSinkOptions = ZstdDecoderOptions & {
  /**
   * Nothing else uses the chunks written here once they are written: each is
   * given back (releaseChunk) as soon as it is copied into the ring.
   */
  releaseInput?: boolean;
} & (
    | {
        /** Receives decoded bytes in order. The chunk is reused once the returned promise settles: copy what you keep. */
        onData: (chunk: Buffer) => Promise<void> | void;
      }
    | {
        /**
         * The worker writes decoded bytes into this file itself (with
         * shared/transport/positional-write.ts) and reports here what it wrote, at least
         * every 2 MiB and at each frame's end. The fd must stay open until the
         * sink has finished or closed: a destroyed sink stops the worker first.
         */
        target: WriteTarget;
        onWritten: (r: WriteReport) => void;
      }
  );

/**
 * Slot sizes: every slot crossing costs a message each way (about 50 us of
 * both threads' time), so slots are large; 8 MiB of output in flight lets
 * the worker decode on while a slot is being written, and all of it counts
 * against the client's memory budget (128 MiB beside the zstd window).
 */
const IN_SLOT = 256 << 10;
const IN_SLOTS = 4;
const OUT_SLOT = 2 << 20;
const OUT_SLOTS = 4;
/** Workers kept for the next image. */
const MAX_IDLE = 2;
/**
 * A worker that decoded a larger window is retired rather than kept: node:zlib
 * gives a window back only when its handle is garbage collected, so an idle
 * worker would hold it (128 MiB for a root image) and two of them would break
 * the decode budget of --disk. Ending the thread frees it at once.
 */
const KEEP_WINDOW_MAX = 8 << 20;

let handleCheck: boolean | undefined;

/**
 * Whether this runtime can run the worker engine for `backend`: fzstd always
 * can; node:zlib needs the handle internals the worker drives (present from
 * Node 22.15, checked rather than assumed, since they are not public API).
 */
export function canDecodeInWorker(backend: ZstdBackend): boolean {
  if (backend === 'fzstd') return true;
  // The zstd program decodes in its own process, never in a worker.
  if (backend === 'zstd' || !hasNodeZstd()) return false;
  if (handleCheck === undefined) {
    const probe = zlib.createZstdDecompress() as unknown as { _handle?: { writeSync?: unknown; close?: () => void }; _writeState?: unknown };
    handleCheck = typeof probe._handle?.writeSync === 'function' && probe._writeState instanceof Uint32Array;
    probe._handle?.close?.();
  }
  return handleCheck;
}

const idle: Worker[] = [];

/** Each worker's stop flag (see stop()). */
const stopFlags = new WeakMap<Worker, Int32Array>();

function spawn(): Worker {
  const flag = new SharedArrayBuffer(4);
  const w = new Worker(new URL('./worker.js', import.meta.url), { workerData: { stop: flag } });
  stopFlags.set(w, new Int32Array(flag));
  return w;
}

export function acquire(): Worker {
  const w = idle.pop() ?? spawn();
  w.removeAllListeners();
  w.ref();
  return w;
}

/**
 * Starts a worker ahead of need (it boots in about 30 ms, while a request is
 * in flight anyway); it waits in the idle pool.
 */
export function warmDecoder(): void {
  if (idle.length === 0 && canDecodeInWorker(zstdBackend())) park(spawn());
}

function release(w: Worker, retire: boolean): void {
  if (retire || idle.length >= MAX_IDLE) {
    void stop(w);
    return;
  }
  w.removeAllListeners();
  w.postMessage({ op: 'close' } satisfies ToWorker);
  park(w);
}

/** How long a worker asked to stop may take to reach its next message before it is terminated. */
const STOP_GRACE_MS = 5000;

/**
 * Ends a worker between two pieces of its work, resolving once the thread is
 * gone: the flag makes it exit before the next message it works on (within
 * one input slot), and the message wakes it if it is idle. terminate() stops
 * a thread wherever it is, and inside node:zlib's constructor (a handle
 * made, not yet initialised) that aborts the whole process when the thread's
 * environment is torn down ("close before init", seen once in CI). Only a
 * worker still busy after the grace time is terminated. Any exception it had
 * queued is dropped: its decode is over.
 */
export function stop(w: Worker): Promise<void> {
  w.removeAllListeners();
  w.on('error', () => undefined);
  const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
  Atomics.store(stopFlags.get(w)!, 0, 1);
  w.postMessage({ op: 'stop' } satisfies ToWorker);
  const late = setTimeout(() => void w.terminate(), STOP_GRACE_MS);
  return exited.finally(() => clearTimeout(late));
}

/** An idle worker must not keep the process alive, and one that dies while idle just leaves the pool. */
function park(w: Worker): void {
  w.unref();
  w.once('exit', () => idle.splice(idle.indexOf(w) >>> 0, 1));
  w.on('error', () => undefined);
  idle.push(w);
}

type Frame = Extract<FrameHeader, { kind: 'frame' }>;

class ZstdSink extends Writable {
  private readonly policy: DecodePolicy;
  private readonly releaseInput: boolean;
  private readonly scanner: FrameScanner;
  private readonly out: { onData: (chunk: Buffer) => Promise<void> | void; ring: SharedArrayBuffer; views: Buffer[] } | { target: WriteTarget; onWritten: (r: WriteReport) => void };
  private worker: Worker | undefined;
  private readonly input = new SharedArrayBuffer(IN_SLOT * IN_SLOTS);
  private readonly inView = new Uint8Array(this.input);
  private readonly inFree = Array.from({ length: IN_SLOTS }, (_, i) => i);
  private inCur = -1;
  private inCurLen = 0;
  private readonly waiting: Array<() => void> = [];
  private readonly outQueue: Array<{ slot: number; len: number }> = [];
  private delivering = false;
  /** Headers of frames sent to the worker whose output has not started to arrive. */
  private readonly headers: Frame[] = [];
  private frameActive = false;
  private framesDone = 0;
  private framesSent = 0;
  private largestWindow = 0;
  private failure: Error | undefined;

  constructor(opts: ZstdSinkOptions) {
    super({ highWaterMark: 1 << 20 });
    this.policy = new DecodePolicy(opts);
    if (!canDecodeInWorker(this.policy.backend)) {
      throw new CosiError('COSI_ERR_UNSUPPORTED', `the ${this.policy.backend} decoder does not run in a worker here; use createZstdDecoder`);
    }
    this.scanner = new FrameScanner(this.policy.checkHeader, false);
    this.releaseInput = opts.releaseInput === true;
    if ('target' in opts) {
      this.out = { target: opts.target, onWritten: opts.onWritten };
    } else {
      const ring = new SharedArrayBuffer(OUT_SLOT * OUT_SLOTS);
      this.out = { onData: opts.onData, ring, views: Array.from({ length: OUT_SLOTS }, (_, i) => Buffer.from(ring, i * OUT_SLOT, OUT_SLOT)) };
    }
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const w = acquire();
    this.worker = w;
    w.on('message', (m: FromWorker) => this.onMessage(m));
    w.on('error', (err) => this.fail(new CosiError('COSI_ERR_INTERNAL', `zstd worker failed: ${err.message}`, { cause: err })));
    w.on('exit', (code) => this.fail(new CosiError('COSI_ERR_INTERNAL', `zstd worker exited (${code}) during a decode`)));
    const out = 'ring' in this.out ? { ring: this.out.ring, slot: OUT_SLOT } : { target: this.out.target, cap: this.policy.expectedSize };
    this.send({ op: 'open', backend: this.policy.backend, maxWindowLog: this.policy.maxWindowLog, input: this.input, inSlot: IN_SLOT, out });
    return w;
  }

  private send(m: ToWorker): void {
    this.worker!.postMessage(m);
  }

  private onMessage(m: FromWorker): void {
    if (this.failure) return;
    try {
      if (m.op === 'in-free') {
        this.inFree.push(m.slot);
      } else if (m.op === 'out') {
        this.enterFrame();
        // Counted on arrival, so a bomb stops within the ring's 8 MiB of the cap.
        this.policy.count(m.len);
        this.outQueue.push(m);
        void this.deliver();
      } else if (m.op === 'wrote') {
        this.enterFrame();
        this.policy.count(m.bytes);
        (this.out as { onWritten: (r: WriteReport) => void }).onWritten(m);
      } else if (m.op === 'over') {
        this.enterFrame();
        this.policy.count(m.len);
        throw new CosiError('COSI_ERR_INTERNAL', 'zstd worker stopped at a cap the decode had not reached');
      } else if (m.op === 'frame-done') {
        this.enterFrame();
        this.policy.endFrame();
        this.frameActive = false;
        this.framesDone++;
      } else {
        this.enterFrame();
        if (m.internal) throw new CosiError('COSI_ERR_INTERNAL', `zstd worker: ${m.message}`);
        if (m.code) throw new CosiError(m.code as ErrorCode, m.message);
        throw m.checksum ? this.policy.checksumMismatch(m.checksum.stored, m.checksum.actual) : new CosiError('COSI_ERR_ZSTD', m.message);
      }
    } catch (err) {
      this.fail(zstdError(err));
      return;
    }
    this.wake();
  }

  /** Output of the next frame begins (slots never span frames). */
  private enterFrame(): void {
    if (this.frameActive) return;
    this.frameActive = true;
    this.policy.startFrame(this.headers.shift()!, this.framesDone + 1);
  }

  private async deliver(): Promise<void> {
    if (this.delivering) return;
    this.delivering = true;
    try {
      while (this.outQueue.length > 0 && !this.failure) {
        const { slot, len } = this.outQueue.shift()!;
        const ring = this.out as { onData: (chunk: Buffer) => Promise<void> | void; views: Buffer[] };
        await ring.onData(ring.views[slot]!.subarray(0, len));
        if (!this.failure) this.send({ op: 'free', slot });
      }
    } catch (err) {
      this.fail(err as Error);
    } finally {
      this.delivering = false;
      this.wake();
    }
  }

  private wake(): void {
    for (const w of this.waiting.splice(0)) w();
  }

  private async until(cond: () => boolean): Promise<void> {
    while (!cond()) {
      if (this.failure) throw this.failure;
      await new Promise<void>((r) => this.waiting.push(r));
    }
    if (this.failure) throw this.failure;
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.wake();
    this.destroy(err);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.failure) return cb(this.failure);
    let events: ScanEvent[];
    try {
      events = this.scanner.feed(chunk);
    } catch (err) {
      return cb(zstdError(err));
    }
    this.forward(events).then(
      () => {
        if (this.releaseInput) releaseChunk(chunk);
        cb();
      },
      (err: unknown) => cb(err as Error),
    );
  }

  private async forward(events: ScanEvent[]): Promise<void> {
    for (const ev of events) {
      if (ev.t === 'start') {
        this.start();
        this.headers.push(ev.header);
        this.largestWindow = Math.max(this.largestWindow, ev.header.windowSize);
        this.framesSent++;
        this.send({ op: 'frame' });
        await this.copyIn(ev.bytes);
      } else if (ev.t === 'data') {
        await this.copyIn(ev.bytes);
      } else {
        this.flushIn();
        this.send(ev.checksum === undefined ? { op: 'end' } : { op: 'end', checksum: ev.checksum });
      }
    }
    // A worker with nothing queued gets the partial slot now rather than when it fills.
    if (this.inFree.length + (this.inCur >= 0 ? 1 : 0) === IN_SLOTS) this.flushIn();
  }

  private async copyIn(b: Buffer): Promise<void> {
    let off = 0;
    while (off < b.length) {
      if (this.inCur < 0) {
        await this.until(() => this.inFree.length > 0);
        this.inCur = this.inFree.shift()!;
        this.inCurLen = 0;
      }
      const n = Math.min(IN_SLOT - this.inCurLen, b.length - off);
      this.inView.set(b.subarray(off, off + n), this.inCur * IN_SLOT + this.inCurLen);
      this.inCurLen += n;
      off += n;
      if (this.inCurLen === IN_SLOT) this.flushIn();
    }
  }

  private flushIn(): void {
    if (this.inCur < 0) return;
    if (this.inCurLen > 0) this.send({ op: 'in', slot: this.inCur, len: this.inCurLen });
    else this.inFree.push(this.inCur);
    this.inCur = -1;
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.failure) return cb(this.failure);
    // The stream-level checks first (truncation, no frame); the size check needs all output in.
    const early = this.scanner.atBoundary && this.scanner.framesSeen > 0 ? null : this.policy.finish(this.scanner);
    if (early) return cb(early);
    this.until(() => this.framesDone === this.framesSent && this.outQueue.length === 0 && !this.delivering).then(
      () => {
        const w = this.worker;
        this.worker = undefined;
        if (w) release(w, this.largestWindow > KEEP_WINDOW_MAX);
        cb(this.policy.finish(this.scanner));
      },
      (err: unknown) => cb(err as Error),
    );
  }

  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    // A worker stopped mid-frame holds a half-decoded frame and messages in flight: it is not reused.
    const w = this.worker;
    this.worker = undefined;
    this.failure ??= err ?? new CosiError('COSI_ERR_INTERNAL', 'zstd sink destroyed');
    this.wake();
    if (!w) return cb(err);
    const stopped = stop(w);
    // A worker writing a target may be inside a write: the sink closes only once it has
    // stopped, so the owner cannot close the fd (and the number be reused) under it.
    if ('target' in this.out) void stopped.then(() => cb(err));
    else cb(err);
  }
}

/**
 * Writable of compressed bytes (any number of zstd and skippable frames),
 * decoded in a worker; see ZstdSinkOptions.onData for the buffer lease.
 * It finishes only after onData has settled for the last byte.
 */
export function createZstdSink(opts: ZstdSinkOptions): Writable {
  return new ZstdSink(opts);
}
