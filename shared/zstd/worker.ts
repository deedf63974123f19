/**
 * The decode worker (see sink.ts for the other side). One session at a time:
 * compressed bytes arrive in slots of a shared input ring, and only slot
 * numbers cross the thread boundary. Decoded bytes go either into slots of a
 * shared output ring (lent to the caller), or, given a WriteTarget, straight
 * into the caller's file from a small buffer of our own, written while it is
 * still in this core's cache; then only counts go back. Nothing is allocated
 * per chunk, so a 1 GiB image costs no garbage and no page faults beyond the
 * buffers and the zstd window.
 *
 * node:zlib is driven through its handle's writeSync with our own output
 * buffer: the stream API allocates a fresh output buffer for every chunk,
 * which here cost as much as the decoding itself (1 GiB: 2.0 s against 1.2 s).
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as zlib from 'node:zlib';
import type { Decompress } from 'fzstd';
import type { XXHash, XXHashAPI } from 'xxhash-wasm';
import { CosiError } from '../errors.js';
import { TargetWriter, type WriteReport, type WriteTarget } from '../transport/positional-write.js';
import { FrameScanner, MAX_BLOCK, type ZstdBackend } from './frame.js';

export type ToWorker =
  | {
      op: 'open';
      backend: ZstdBackend;
      maxWindowLog: number;
      input: SharedArrayBuffer;
      inSlot: number;
      /** Decoded bytes go to the ring, or with `target` to that file. */
      out: { ring: SharedArrayBuffer; slot: number } | { target: WriteTarget; cap?: number };
    }
  /**
   * The next input bytes begin a frame. With `at` (target mode: a framed
   * image's lane), its output goes `at` bytes past the target's position and
   * may be at most `size` bytes.
   */
  | { op: 'frame'; at?: number; size?: number }
  | { op: 'in'; slot: number; len: number }
  /** All of the current frame's bytes have been sent; `checksum` is the stored one, when it has one. */
  | { op: 'end'; checksum?: number }
  /** An output slot was consumed and may be filled again. */
  | { op: 'free'; slot: number }
  | { op: 'close' }
  /** Wakes an idle worker to see its stop flag (see stopIfAsked). */
  | { op: 'stop' };

export type FromWorker =
  | { op: 'out'; slot: number; len: number }
  /** Target mode: bytes written since the last report (never spanning frames). */
  | ({ op: 'wrote' } & WriteReport)
  /** Target mode: `len` more decoded bytes would pass the cap; nothing of them was written. */
  | { op: 'over'; len: number }
  | { op: 'in-free'; slot: number }
  | { op: 'frame-done' }
  | { op: 'error'; message: string; checksum?: { stored: number; actual: number }; internal?: boolean; code?: string };

/** The handle internals writeSync needs; checked once by sink.ts before any worker is used. */
interface ZlibHandle {
  writeSync(flush: number, input: Uint8Array, inOff: number, inLen: number, out: Uint8Array, outOff: number, outLen: number): void;
  onerror: (message: string, errno: number, code?: string) => void;
}

/** One frame's decoder: consumes input while output room lasts. */
interface Frame {
  /** Feeds input[off..]; returns the new offset (less than input.length only when output room ran out). */
  feed(input: Uint8Array, off: number): number;
  /** Drains what is left; false while output room is lacking. */
  finish(checksum: number | undefined): boolean;
}

class DecodeError extends Error {
  constructor(message: string, readonly checksum?: { stored: number; actual: number }) {
    super(message);
  }
}

/** fzstd and its checksum hasher, loaded on the first fzstd session (node:zlib sessions never need them). */
let fzstd: { Decompress: typeof Decompress; xxhash: XXHashAPI } | undefined;

/** Where decoded bytes go; the decoders ask it for room and say how much they produced. */
interface Output {
  /** [view, offset, length] of free room; undefined while there is none. */
  room(): [Uint8Array, number, number] | undefined;
  /** Room for at least `n` more bytes without waiting. */
  hasRoom(n: number): boolean;
  produced(n: number): void;
  /** Hands on what was produced (at a frame's end: nothing may span frames). */
  ship(): void;
  free(slot: number): void;
  /** Target mode: the next frame's output goes at `at`, at most `size` bytes of it. */
  place?(at: number, size: number): void;
}

/** Slots of the shared ring, each lent to the other side until it frees it. */
class RingOutput implements Output {
  private readonly view: Uint8Array;
  private readonly idle: number[] = [];
  private cur = -1;
  private curLen = 0;

  constructor(ring: SharedArrayBuffer, private readonly slot: number) {
    this.view = new Uint8Array(ring);
    for (let i = 0; i < ring.byteLength / slot; i++) this.idle.push(i);
  }

  room(): [Uint8Array, number, number] | undefined {
    if (this.cur < 0) {
      const s = this.idle.shift();
      if (s === undefined) return undefined;
      this.cur = s;
      this.curLen = 0;
    }
    return [this.view, this.cur * this.slot + this.curLen, this.slot - this.curLen];
  }

  hasRoom(n: number): boolean {
    const inCur = this.cur < 0 ? 0 : this.slot - this.curLen;
    return inCur + this.idle.length * this.slot >= n;
  }

  produced(n: number): void {
    this.curLen += n;
    if (this.curLen === this.slot) this.ship();
  }

  ship(): void {
    if (this.cur < 0) return;
    if (this.curLen > 0) post({ op: 'out', slot: this.cur, len: this.curLen });
    else this.idle.unshift(this.cur);
    this.cur = -1;
    this.curLen = 0;
  }

  free(slot: number): void {
    this.idle.push(slot);
  }
}

/**
 * A buffer small enough to stay in this core's cache between decoding and
 * writing it; counts are reported every REPORT_EVERY bytes and at frame ends.
 */
const FILE_BUF = 256 << 10;
const REPORT_EVERY = 2 << 20;

class OverCap extends Error {
  constructor(readonly len: number) {
    super('over the cap');
  }
}

class FileOutput implements Output {
  private readonly buf = new Uint8Array(FILE_BUF);
  private len = 0;
  private total = 0;
  private unreported = 0;
  /** Output the current frame may still give (place()), else unlimited. */
  private frameLeft = Infinity;
  private readonly writer: TargetWriter;

  constructor(target: WriteTarget, private readonly cap: number | undefined) {
    this.writer = new TargetWriter(target);
  }

  room(): [Uint8Array, number, number] {
    return [this.buf, this.len, FILE_BUF - this.len];
  }

  hasRoom(): boolean {
    return true;
  }

  produced(n: number): void {
    this.len += n;
    if (this.len === FILE_BUF) this.flush();
  }

  ship(): void {
    this.flush();
    if (this.unreported > 0) this.report();
  }

  free(): void {}

  place(at: number, size: number): void {
    this.flush();
    this.writer.moveTo(at);
    this.frameLeft = size;
  }

  private flush(): void {
    if (this.len === 0) return;
    // The other side counts every byte too, but only after it is written: a bomb is stopped here.
    if ((this.cap !== undefined && this.total + this.len > this.cap) || this.len > this.frameLeft) {
      if (this.unreported > 0) this.report();
      throw new OverCap(this.len);
    }
    this.writer.put(this.buf.subarray(0, this.len));
    this.frameLeft -= this.len;
    this.total += this.len;
    this.unreported += this.len;
    this.len = 0;
    if (this.unreported >= REPORT_EVERY) this.report();
  }

  private report(): void {
    this.unreported = 0;
    post({ op: 'wrote', ...this.writer.take() });
  }
}

class Session {
  private readonly queue: ToWorker[] = [];
  private readonly inView: Uint8Array;
  private readonly inSlot: number;
  readonly out: Output;
  /** How far into the head 'in' op we are. */
  private inOff = 0;
  private frame: Frame | undefined;
  private zstd: NodeStream | undefined;
  failed = false;

  constructor(private readonly o: Extract<ToWorker, { op: 'open' }>) {
    this.inView = new Uint8Array(o.input);
    this.inSlot = o.inSlot;
    this.out = 'ring' in o.out ? new RingOutput(o.out.ring, o.out.slot) : new FileOutput(o.out.target, o.out.cap);
  }

  take(m: ToWorker): void {
    if (m.op === 'free') this.out.free(m.slot);
    else this.queue.push(m);
    this.pump();
  }

  /** Copies bytes in (fzstd); the caller checked hasRoom. */
  put(b: Uint8Array): void {
    let off = 0;
    while (off < b.length) {
      const [view, at, len] = this.out.room()!;
      const n = Math.min(len, b.length - off);
      view.set(b.subarray(off, off + n), at);
      off += n;
      this.out.produced(n);
    }
  }

  private pump(): void {
    try {
      while (!this.failed && this.queue.length > 0) {
        stopIfAsked();
        const m = this.queue[0]!;
        if (m.op === 'frame') {
          if (m.at !== undefined) this.out.place!(m.at, m.size ?? Infinity);
          this.frame = this.o.backend === 'node' ? new NodeFrame(this, (this.zstd ??= new NodeStream(this.o.maxWindowLog))) : new FzstdFrame(this);
        } else if (m.op === 'in') {
          const input = this.inView.subarray(m.slot * this.inSlot, m.slot * this.inSlot + m.len);
          this.inOff = this.frame!.feed(input, this.inOff);
          if (this.inOff < input.length) return;
          this.inOff = 0;
          post({ op: 'in-free', slot: m.slot });
        } else if (m.op === 'end') {
          if (!this.frame!.finish(m.checksum)) return;
          // Slots and reports never span frames, so the other side can check each frame's size.
          this.out.ship();
          this.frame = undefined;
          post({ op: 'frame-done' });
        }
        this.queue.shift();
      }
    } catch (err) {
      this.failed = true;
      this.frame = undefined;
      // A DecodeError is the data's fault, a CosiError the target's (a write failed); anything else is ours.
      if (err instanceof OverCap) post({ op: 'over', len: err.len });
      else if (err instanceof CosiError) post({ op: 'error', message: err.message, code: err.code });
      else if (!(err instanceof DecodeError)) post({ op: 'error', message: err instanceof Error ? err.message : String(err), internal: true });
      else post(err.checksum ? { op: 'error', message: err.message, checksum: err.checksum } : { op: 'error', message: err.message });
    }
  }
}

/**
 * One libzstd stream per session, reused frame after frame: its window is
 * allocated once, and node:zlib frees a handle's memory only when the handle
 * is garbage collected, never on close(), so a new handle per frame would
 * keep every old 128 MiB window alive until a GC that a worker rarely runs.
 */
class NodeStream {
  readonly handle: ZlibHandle;
  readonly state: Uint32Array;
  error: string | undefined;

  constructor(maxWindowLog: number) {
    const stream = zlib.createZstdDecompress({ params: { [zlib.constants.ZSTD_d_windowLogMax]: Math.min(31, Math.max(10, maxWindowLog)) } });
    const internals = stream as unknown as { _handle: ZlibHandle; _writeState: Uint32Array };
    this.handle = internals._handle;
    this.state = internals._writeState;
    // The stream object is never used; its error path would only destroy it on a later tick.
    this.handle.onerror = (message) => void (this.error ??= message);
  }
}

class NodeFrame implements Frame {
  private readonly handle: ZlibHandle;
  private readonly state: Uint32Array;
  private off = 0;
  private consumed = 0;

  /** libzstd starts the next frame by itself after the previous one's end, with the same window. */
  constructor(private readonly s: Session, private readonly z: NodeStream) {
    this.handle = z.handle;
    this.state = z.state;
  }

  feed(input: Uint8Array, off: number): number {
    this.off = off;
    this.run(input);
    return this.off;
  }

  finish(): boolean {
    this.off = 0;
    return this.run(EMPTY);
  }

  /** True once libzstd has given all it can for this input; false when output room ran out first. */
  private run(input: Uint8Array): boolean {
    for (;;) {
      const room = this.s.out.room();
      if (!room) return false;
      const [view, at, len] = room;
      const avail = input.length - this.off;
      this.handle.writeSync(zlib.constants.ZSTD_e_continue, input, this.off, avail, view, at, len);
      if (this.z.error !== undefined) throw new DecodeError(`corrupt zstd data: ${this.z.error}`);
      const outLeft = this.state[0]!;
      const inLeft = this.state[1]!;
      this.off += avail - inLeft;
      this.consumed += avail - inLeft;
      this.s.out.produced(len - outLeft);
      if (outLeft > 0) {
        // With room to spare libzstd stops early only at its frame's end, and we feed it exactly one frame.
        if (inLeft > 0) throw new DecodeError(`corrupt zstd data: decoder stopped after ${this.consumed} frame bytes, ${inLeft} before the frame's end`);
        return true;
      }
    }
  }

}

const EMPTY = new Uint8Array(0);
/** fzstd buffers input by reference until it holds this many bytes of a frame (its header check). */
const HEADER_HOLD = 18;

class FzstdFrame implements Frame {
  private readonly d: Decompress;
  private readonly hash: XXHash<bigint>;
  /** Splits the input at block ends: fzstd decodes whatever it is given at once, at most one block is then 128 KiB. */
  private readonly blocks = new FrameScanner(() => undefined, true);
  private pending: Uint8Array[] = [];
  /** Bytes of this frame pushed so far: fzstd holds on to pieces until it has a whole header. */
  private pushed = 0;

  constructor(private readonly s: Session) {
    this.hash = fzstd!.xxhash.create64(0n);
    // Lent blocks (our patch): fzstd decodes every block into one buffer, which put() copies at once,
    // instead of a fresh 128 KiB array per block left for this thread's rare collections.
    const Lending = fzstd!.Decompress as unknown as new (ondata: (data: Uint8Array, final: boolean) => void, lend: boolean) => Decompress;
    this.d = new Lending((data) => {
      if (data.length === 0) return;
      this.hash.update(data);
      this.s.put(data);
    }, true);
  }

  feed(input: Uint8Array, off: number): number {
    if (this.pending.length === 0) {
      const all = Buffer.from(input.buffer, input.byteOffset + off, input.length - off);
      for (const ev of this.blocks.feed(all)) if (ev.t !== 'end') this.pending.push(ev.bytes);
    }
    while (this.pending.length > 0) {
      if (!this.s.out.hasRoom(MAX_BLOCK)) return input.length - this.pendingBytes();
      let piece = this.pending.shift()!;
      // fzstd keeps a piece by reference while its block is unfinished (the slot's last run may
      // stop inside one) and while it has under 18 bytes of the frame; the slot is reused before then.
      if (this.pending.length === 0 || this.pushed < HEADER_HOLD) piece = new Uint8Array(piece);
      this.pushed += piece.length;
      this.push(piece, false);
    }
    return input.length;
  }

  finish(checksum: number | undefined): boolean {
    if (!this.s.out.hasRoom(MAX_BLOCK)) return false;
    this.push(EMPTY, true);
    if (checksum !== undefined) {
      const actual = Number(this.hash.digest() & 0xffffffffn);
      if (actual !== checksum) throw new DecodeError('content checksum mismatch', { stored: checksum, actual });
    }
    return true;
  }

  /** fzstd throws plain errors for bad data. */
  private push(piece: Uint8Array, final: boolean): void {
    try {
      this.d.push(piece, final);
    } catch (err) {
      // Ours (from the output, inside fzstd's callback) pass through; fzstd's own are the data's.
      if (err instanceof DecodeError || err instanceof CosiError || err instanceof OverCap) throw err;
      throw new DecodeError(`corrupt zstd data: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private pendingBytes(): number {
    return this.pending.reduce((a, b) => a + b.length, 0);
  }
}

function post(m: FromWorker): void {
  parentPort!.postMessage(m);
}

let session: Session | undefined;
/** Messages held while fzstd loads (once per worker). */
let backlog: ToWorker[] | undefined;

/**
 * Set by the other side when it wants this thread gone (see stop() in
 * sink.ts): checked before each message is worked on, so the thread ends
 * between two pieces of our own work, never inside node:zlib, and within one
 * input slot of being asked, however many messages are queued.
 */
const stopFlag = new Int32Array((workerData as { stop: SharedArrayBuffer }).stop);

function stopIfAsked(): void {
  if (Atomics.load(stopFlag, 0) !== 0) process.exit(0);
}

function handle(m: ToWorker): void {
  stopIfAsked();
  if (backlog) {
    backlog.push(m);
    return;
  }
  if (m.op === 'open') {
    session = new Session(m);
    if (m.backend === 'fzstd' && !fzstd) {
      backlog = [];
      Promise.all([import('fzstd'), import('xxhash-wasm').then((x) => x.default())]).then(
        ([f, xxhash]) => {
          fzstd = { Decompress: f.Decompress, xxhash };
          const held = backlog!;
          backlog = undefined;
          for (const x of held) handle(x);
        },
        (err: Error) => post({ op: 'error', message: `cannot load fzstd: ${err.message}`, internal: true }),
      );
    }
  } else if (m.op === 'close') {
    session = undefined;
  } else {
    session?.take(m);
  }
}

parentPort!.on('message', handle);
