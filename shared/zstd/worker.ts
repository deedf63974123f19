/**
 * The decode worker (see sink.ts for the other side). One session at a time:
 * compressed bytes arrive in slots of a shared input ring, decoded bytes go
 * into slots of a shared output ring, and only slot numbers cross the thread
 * boundary. Nothing is allocated per chunk, so a 1 GiB image costs no garbage
 * and no page faults beyond the rings and the zstd window.
 *
 * node:zlib is driven through its handle's writeSync with our own output
 * buffer: the stream API allocates a fresh output buffer for every chunk,
 * which here cost as much as the decoding itself (1 GiB: 2.0 s against 1.2 s).
 */
import { parentPort } from 'node:worker_threads';
import * as zlib from 'node:zlib';
import type { Decompress } from 'fzstd';
import type { XXHash, XXHashAPI } from 'xxhash-wasm';
import { FrameScanner, MAX_BLOCK, type ZstdBackend } from './frame.js';

export type ToWorker =
  | { op: 'open'; backend: ZstdBackend; maxWindowLog: number; input: SharedArrayBuffer; inSlot: number; output: SharedArrayBuffer; outSlot: number }
  /** The next input bytes begin a frame. */
  | { op: 'frame' }
  | { op: 'in'; slot: number; len: number }
  /** All of the current frame's bytes have been sent; `checksum` is the stored one, when it has one. */
  | { op: 'end'; checksum?: number }
  /** An output slot was consumed and may be filled again. */
  | { op: 'free'; slot: number }
  | { op: 'close' };

export type FromWorker =
  | { op: 'out'; slot: number; len: number }
  | { op: 'in-free'; slot: number }
  | { op: 'frame-done' }
  | { op: 'error'; message: string; checksum?: { stored: number; actual: number }; internal?: boolean };

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

class Session {
  private readonly queue: ToWorker[] = [];
  private readonly free: number[] = [];
  private readonly inView: Uint8Array;
  private readonly outView: Uint8Array;
  private readonly outSlot: number;
  private readonly inSlot: number;
  /** Output slot being filled, and how full it is. */
  private cur = -1;
  private curLen = 0;
  /** How far into the head 'in' op we are. */
  private inOff = 0;
  private frame: Frame | undefined;
  private zstd: NodeStream | undefined;
  failed = false;

  constructor(private readonly o: Extract<ToWorker, { op: 'open' }>) {
    this.inView = new Uint8Array(o.input);
    this.outView = new Uint8Array(o.output);
    this.inSlot = o.inSlot;
    this.outSlot = o.outSlot;
    const slots = o.output.byteLength / o.outSlot;
    for (let i = 0; i < slots; i++) this.free.push(i);
  }

  take(m: ToWorker): void {
    if (m.op === 'free') this.free.push(m.slot);
    else this.queue.push(m);
    this.pump();
  }

  /** Output room: [view, offset, length] of the current slot, taking a fresh one when needed. */
  room(): [Uint8Array, number, number] | undefined {
    if (this.cur < 0) {
      const s = this.free.shift();
      if (s === undefined) return undefined;
      this.cur = s;
      this.curLen = 0;
    }
    return [this.outView, this.cur * this.outSlot + this.curLen, this.outSlot - this.curLen];
  }

  /** Room for at least `n` more bytes without waiting (the current slot plus free ones). */
  hasRoom(n: number): boolean {
    const inCur = this.cur < 0 ? 0 : this.outSlot - this.curLen;
    return inCur + this.free.length * this.outSlot >= n;
  }

  produced(n: number): void {
    this.curLen += n;
    if (this.curLen === this.outSlot) this.ship();
  }

  /** Copies bytes in (fzstd), shipping full slots; the caller checked hasRoom. */
  put(b: Uint8Array): void {
    let off = 0;
    while (off < b.length) {
      const [view, at, len] = this.room()!;
      const n = Math.min(len, b.length - off);
      view.set(b.subarray(off, off + n), at);
      off += n;
      this.produced(n);
    }
  }

  ship(): void {
    if (this.cur < 0) return;
    if (this.curLen > 0) post({ op: 'out', slot: this.cur, len: this.curLen });
    else this.free.unshift(this.cur);
    this.cur = -1;
    this.curLen = 0;
  }

  private pump(): void {
    try {
      while (!this.failed && this.queue.length > 0) {
        const m = this.queue[0]!;
        if (m.op === 'frame') {
          this.frame = this.o.backend === 'node' ? new NodeFrame(this, (this.zstd ??= new NodeStream(this.o.maxWindowLog))) : new FzstdFrame(this);
        } else if (m.op === 'in') {
          const input = this.inView.subarray(m.slot * this.inSlot, m.slot * this.inSlot + m.len);
          this.inOff = this.frame!.feed(input, this.inOff);
          if (this.inOff < input.length) return;
          this.inOff = 0;
          post({ op: 'in-free', slot: m.slot });
        } else if (m.op === 'end') {
          if (!this.frame!.finish(m.checksum)) return;
          // Slots never span frames, so the other side can check each frame's size.
          this.ship();
          this.frame = undefined;
          post({ op: 'frame-done' });
        }
        this.queue.shift();
      }
    } catch (err) {
      this.failed = true;
      this.frame = undefined;
      // Anything but a DecodeError is a fault of ours, not of the data.
      if (!(err instanceof DecodeError)) post({ op: 'error', message: err instanceof Error ? err.message : String(err), internal: true });
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
      const room = this.s.room();
      if (!room) return false;
      const [view, at, len] = room;
      const avail = input.length - this.off;
      this.handle.writeSync(zlib.constants.ZSTD_e_continue, input, this.off, avail, view, at, len);
      if (this.z.error !== undefined) throw new DecodeError(`corrupt zstd data: ${this.z.error}`);
      const outLeft = this.state[0]!;
      const inLeft = this.state[1]!;
      this.off += avail - inLeft;
      this.consumed += avail - inLeft;
      this.s.produced(len - outLeft);
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
    this.d = new fzstd!.Decompress((data) => {
      if (data.length === 0) return;
      this.hash.update(data);
      this.s.put(data);
    });
  }

  feed(input: Uint8Array, off: number): number {
    if (this.pending.length === 0) {
      const all = Buffer.from(input.buffer, input.byteOffset + off, input.length - off);
      for (const ev of this.blocks.feed(all)) if (ev.t !== 'end') this.pending.push(ev.bytes);
    }
    while (this.pending.length > 0) {
      if (!this.s.hasRoom(MAX_BLOCK)) return input.length - this.pendingBytes();
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
    if (!this.s.hasRoom(MAX_BLOCK)) return false;
    this.push(EMPTY, true);
    if (checksum !== undefined) {
      const actual = Number(this.hash.digest() & 0xffffffffn);
      if (actual !== checksum) throw new DecodeError('content checksum mismatch', { stored: checksum, actual });
    }
    return true;
  }

  /** fzstd throws plain errors for bad data; they are the data's fault, not ours. */
  private push(piece: Uint8Array, final: boolean): void {
    try {
      this.d.push(piece, final);
    } catch (err) {
      if (err instanceof DecodeError) throw err;
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

function handle(m: ToWorker): void {
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
