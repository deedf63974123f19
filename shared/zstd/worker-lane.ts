/**
 * A decode lane of a framed image in a worker thread (node:zlib, Node >=
 * 22.15): the decode worker of sink.ts, told where each frame's output goes,
 * writes it at that offset of the target itself. Nothing decoded crosses a
 * thread or a pipe; this thread copies the compressed bytes into a shared
 * ring and reads counts. One libzstd stream per worker decodes all of the
 * lane's frames, so its window is allocated once (worker.ts, NodeStream).
 *
 * The ring holds the lane's queue: up to one whole compressed frame (see
 * FramedSink.backlogMax) in IN_SLOT slots, so the next lane can start on the
 * next frame while this one decodes.
 */
import type { Worker } from 'node:worker_threads';
import { CosiError, type ErrorCode } from '../errors.js';
import type { WriteReport, WriteTarget } from '../transport/positional-write.js';
import { seekTableError, type SeekFrame } from './seek-table.js';
import { acquire, stop } from './sink.js';
import type { FromWorker, ToWorker } from './worker.js';

/** What a lane tells the sink that deals its frames. */
export interface LaneOwner {
  readonly label: string;
  wrote(r: WriteReport): void;
  frameDone(f: SeekFrame): void;
  laneFailed(err: Error): void;
}

/** What FramedSink drives: a process lane (lanes.ts) or a worker lane. */
export interface DecodeLane {
  failure: Error | undefined;
  /** Queued input bytes the decoder has not taken yet. */
  readonly backlog: number;
  /** `sized`: the frame's header declares its content size (which the decoder then holds it to). */
  start(frame: SeekFrame, sized: boolean): void;
  send(piece: Buffer): void;
  /** All of the frame begun by start() has been sent. */
  endFrame(): void;
  /** Resolves once the backlog is at most `max` bytes, or the lane failed. */
  until(max: number): Promise<void>;
  /** Every frame sent is decoded and written (or the lane's failure is thrown). */
  finish(): Promise<void>;
  kill(): void;
  /** Settles once nothing of the lane can write the target any more. */
  readonly exited: Promise<unknown>;
}

const IN_SLOT = 1 << 20;

export class WorkerLane implements DecodeLane {
  failure: Error | undefined;
  readonly exited: Promise<unknown>;
  private readonly worker: Worker;
  private readonly slots: number;
  private readonly input: SharedArrayBuffer;
  private readonly view: Uint8Array;
  private readonly free: number[];
  private cur = -1;
  private curLen = 0;
  /** Bytes sent in slots the worker has not freed yet. */
  private inFlight = 0;
  /**
   * Pieces waiting for a free slot (the lane's queue is counted in bytes, the
   * ring in slots), and the frame starts and ends between them, kept in order.
   */
  private readonly pending: Array<Buffer | ToWorker> = [];
  private pendingBytes = 0;
  /** Frames sent, not yet reported done, in order; `out` counts each one's output. */
  private readonly queue: Array<{ frame: SeekFrame; out: number }> = [];
  private waiters: Array<() => void> = [];
  /** Bytes in each slot sent. */
  private readonly slotLen = new Map<number, number>();
  private stopped: Promise<void> | undefined;
  private exit!: () => void;

  constructor(
    private readonly owner: LaneOwner,
    o: { target: WriteTarget; maxWindowLog: number; backlogMax: number },
  ) {
    this.slots = Math.ceil(o.backlogMax / IN_SLOT) + 2;
    this.input = new SharedArrayBuffer(this.slots * IN_SLOT);
    this.view = new Uint8Array(this.input);
    this.free = Array.from({ length: this.slots }, (_, i) => i);
    this.worker = acquire();
    this.exited = new Promise<void>((resolve) => (this.exit = resolve));
    this.worker.on('message', (m: FromWorker) => this.onMessage(m));
    this.worker.on('error', (err) => this.fail(new CosiError('COSI_ERR_INTERNAL', `zstd worker failed: ${err.message}`, { cause: err })));
    this.worker.on('exit', (code) => {
      if (!this.stopped) this.fail(new CosiError('COSI_ERR_INTERNAL', `zstd worker exited (${code}) during a decode`));
      this.exit();
    });
    this.post({ op: 'open', backend: 'node', maxWindowLog: o.maxWindowLog, input: this.input, inSlot: IN_SLOT, out: { target: o.target } });
  }

  get backlog(): number {
    return this.inFlight + this.curLen + this.pendingBytes;
  }

  start(frame: SeekFrame): void {
    this.queue.push({ frame, out: 0 });
    this.pending.push({ op: 'frame', at: frame.decompressedOffset, size: frame.decompressedSize });
    this.drain();
  }

  send(piece: Buffer): void {
    if (this.failure) return;
    if (this.pending.length > 0) {
      this.pending.push(piece);
      this.pendingBytes += piece.length;
      return;
    }
    const left = this.copyIn(piece);
    if (left.length > 0) {
      this.pending.push(left);
      this.pendingBytes += left.length;
    }
    // A worker with nothing queued gets the partial slot now rather than when it fills.
    if (this.inFlight === 0) this.flush();
  }

  endFrame(): void {
    this.pending.push({ op: 'end' });
    this.drain();
  }

  async until(max: number): Promise<void> {
    this.drain();
    while (!this.failure && this.backlog > max) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  async finish(): Promise<void> {
    this.drain();
    while (!this.failure && (this.queue.length > 0 || this.pending.length > 0)) await new Promise<void>((resolve) => this.waiters.push(resolve));
    if (this.failure) throw this.failure;
    // The window is as large as a frame: the thread ends rather than keep it idle (sink.ts, KEEP_WINDOW_MAX).
    await this.halt();
  }

  kill(): void {
    void this.halt();
  }

  private halt(): Promise<void> {
    // stop() takes the worker's listeners over, ours for 'exit' included.
    this.stopped ??= stop(this.worker).then(() => this.exit());
    this.wake();
    return this.stopped;
  }

  /** Copies what fits into free slots; returns the rest. */
  private copyIn(piece: Buffer): Buffer {
    let off = 0;
    while (off < piece.length) {
      if (this.cur < 0) {
        const s = this.free.shift();
        if (s === undefined) break;
        this.cur = s;
        this.curLen = 0;
      }
      const n = Math.min(IN_SLOT - this.curLen, piece.length - off);
      this.view.set(piece.subarray(off, off + n), this.cur * IN_SLOT + this.curLen);
      this.curLen += n;
      off += n;
      if (this.curLen === IN_SLOT) this.flush();
    }
    return piece.subarray(off);
  }

  private flush(): void {
    if (this.cur < 0) return;
    if (this.curLen > 0) {
      this.post({ op: 'in', slot: this.cur, len: this.curLen });
      this.inFlight += this.curLen;
    } else {
      this.free.unshift(this.cur);
    }
    this.cur = -1;
    this.curLen = 0;
  }

  /** Moves pending pieces (and frame ends) into slots as they free up. */
  private drain(): void {
    while (this.pending.length > 0 && !this.failure) {
      const p = this.pending[0]!;
      if (!Buffer.isBuffer(p)) {
        // Everything before a frame's start or end goes first.
        this.flush();
        this.post(p);
        this.pending.shift();
        continue;
      }
      const left = this.copyIn(p);
      this.pendingBytes -= p.length - left.length;
      if (left.length > 0) {
        this.pending[0] = left;
        break;
      }
      this.pending.shift();
    }
    if (this.inFlight === 0) this.flush();
  }

  private onMessage(m: FromWorker): void {
    if (this.failure) return;
    try {
      if (m.op === 'in-free') {
        this.free.push(m.slot);
        this.inFlight -= this.slotLen.get(m.slot) ?? 0;
      } else if (m.op === 'wrote') {
        const head = this.queue[0];
        if (!head) throw new CosiError('COSI_ERR_INTERNAL', 'zstd worker wrote outside any frame');
        head.out += m.bytes;
        this.owner.wrote(m);
      } else if (m.op === 'frame-done') {
        const head = this.queue.shift()!;
        if (head.out !== head.frame.decompressedSize) throw this.sizeLie(head.frame, head.out);
        this.owner.frameDone(head.frame);
      } else if (m.op === 'over') {
        throw seekTableError(`${this.owner.label}: seek table entry ${this.queue[0]?.frame.index} lists ${this.queue[0]?.frame.decompressedSize} decompressed bytes, its frame gives more`);
      } else if (m.op === 'error') {
        if (m.internal) throw new CosiError('COSI_ERR_INTERNAL', `zstd worker: ${m.message}`);
        if (m.code) throw new CosiError(m.code as ErrorCode, m.message);
        throw new CosiError('COSI_ERR_ZSTD', `${m.message} in ${this.owner.label}${this.where()}`);
      } else if (m.op === 'out') {
        throw new CosiError('COSI_ERR_INTERNAL', 'zstd worker used its ring in target mode');
      }
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    this.drain();
    this.wake();
  }

  private post(m: ToWorker): void {
    if (m.op === 'in') this.slotLen.set(m.slot, m.len);
    this.worker.postMessage(m);
  }

  private sizeLie(f: SeekFrame, got: number): CosiError {
    return seekTableError(`${this.owner.label}: seek table entry ${f.index} lists ${f.decompressedSize} decompressed bytes, its frame gave ${got}`);
  }

  private where(): string {
    const f = this.queue[0]?.frame;
    return f ? ` (frame ${f.index}, compressed bytes ${f.compressedOffset}-${f.compressedOffset + f.compressedSize})` : '';
  }

  fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.owner.laneFailed(err);
    this.kill();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}
