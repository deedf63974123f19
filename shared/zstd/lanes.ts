/**
 * Parallel decode of a framed image: a Writable of the entry's compressed
 * bytes, in order (after the SHA-384 tap), that deals each zstd frame the seek
 * table lists to one of N decode lanes in turn; each frame's output is
 * written at its offset of the target.
 *
 * A lane decodes all of its frames back to back with one libzstd context,
 * keeping its window across frames (a decoder per frame paid for a fresh
 * window each time: 3 zstd processes for 3 frames took 2.5x the CPU time of
 * one process here, the fresh memory's page faults being costly on this
 * VM). Where the runtime has node:zlib's zstd (Node >= 22.15) a lane is a
 * worker thread that decodes and writes each frame at its offset itself
 * (worker-lane.ts); else it is a zstd program process whose output this
 * thread reads into one reused buffer (child-output.ts) and writes.
 *
 * Memory: with two lanes or more, each may hold up to one whole compressed
 * frame of input queued (so the next lane can start on the next frame while
 * this one decodes; a single lane queues 2 MiB), and its decoder holds one
 * frame window (at most the frame's size). Bound:
 * threads x (largest compressed frame + 2 MiB of input slots + largest
 * frame's window) + a 64 KiB read buffer and a 256 KiB write buffer per lane;
 * 64 MiB frames at 4:1 on 2 threads: 2 x (16 + 2 + 64) MiB.
 *
 * Every frame's placement is checked: its header's window against
 * maxWindowLog, its declared content size against the table, exactly one
 * frame per entry, and each lane's output against the sizes of its frames.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable as WritableType } from 'node:stream';
import { Writable } from 'node:stream';
import { CosiError } from '../errors.js';
import { TargetWriter, type WriteReport, type WriteTarget } from '../transport/positional-write.js';
import { zstdProgram } from './backends.js';
import { childOutput } from './child-output.js';
import { FrameScanner, readFrameHeader } from './frame.js';
import { DecodePolicy, zstdBackend } from './policy.js';
import { canDecodeInWorker } from './sink.js';
import { WorkerLane, type DecodeLane, type LaneOwner } from './worker-lane.js';
import { seekTableError, type SeekFrame } from './seek-table.js';

export interface FramedSinkOptions {
  frames: readonly SeekFrame[];
  label: string;
  maxWindowLog: number;
  threads: number;
  /** Where decoded byte 0 of the image goes. */
  target: WriteTarget;
  onWritten: (r: WriteReport) => void;
  /** Told when frame `index` is decoded and written, in no particular order. */
  onFrameDone?: (index: number) => void;
}

/**
 * What the lanes decode with: node:zlib in worker threads where the runtime
 * has it, else the zstd program in child processes; none with fzstd (forced
 * by COSI_ZSTD_DECODER, or no zstd program on Node 20).
 */
function laneKind(): 'node' | 'zstd' | undefined {
  const b = zstdBackend();
  if (b === 'node' && canDecodeInWorker('node')) return 'node';
  return b !== 'fzstd' && zstdProgram() !== undefined ? 'zstd' : undefined;
}

/** Whether framed images can be decoded in lanes here. */
export function canDecodeInLanes(): boolean {
  return laneKind() !== undefined;
}

const STDERR_KEEP = 2048;

/** Input queued for the only lane (--threads 1). */
const SINGLE_LANE_BACKLOG = 2 << 20;

/**
 * The zstd program reads its input in whole 128 KiB buffers, so the tail of
 * a frame waits in its buffer until the lane's next frame arrives (a frame
 * behind per lane: a resumed fetch lost those frames too). A skippable frame
 * this large after each frame fills that buffer; libzstd skips it, and it
 * costs the pipe 256 KiB per frame (1.6% of a 64 MiB frame at 4:1).
 */
const FILLER = (() => {
  const b = Buffer.alloc(256 << 10);
  b.writeUInt32LE(0x184d2a50, 0);
  b.writeUInt32LE(b.length - 8, 4);
  return b;
})();

/**
 * The zstd program writes its output through stdio, which holds the last few
 * KiB of a frame (4 KiB for a FIFO with glibc) until more output comes: a lane
 * whose input stalls never reports its last frame done, and a resumed fetch
 * fetched that whole frame again (9d: 19.3 MiB twice for 12.8 MiB frames). A
 * frame of PAD zero bytes (one RLE block, 13 bytes of input) after each frame
 * pushes the real output out; the lane drops those bytes. Only after frames
 * that declare their size, which libzstd holds them to: after one that does
 * not, a table listing too few bytes would count pad bytes as the frame's.
 */
const PAD = 32 << 10;
const PAD_FRAME = (() => {
  const b = Buffer.alloc(13);
  b.writeUInt32LE(0xfd2fb528, 0);
  b[4] = 0xa0; // single segment, 4-byte content size, no checksum
  b.writeUInt32LE(PAD, 5);
  b.writeUIntLE(1 | (1 << 1) | (PAD << 3), 9, 3); // last block, RLE, PAD bytes of the next byte (0)
  return b;
})();

class ProcessLane implements DecodeLane {
  readonly child: ChildProcessByStdio<WritableType, Readable | null, Readable>;
  private readonly stdout: Readable;
  /** Frames sent, not yet fully decoded, in order; `out` counts each one's output (`frame` undefined: a pad). */
  private readonly queue: Array<{ frame: SeekFrame | undefined; out: number }> = [];
  private stderr = '';
  private padNext = false;
  failure: Error | undefined;
  readonly exited: Promise<number | null>;
  private waiters: Array<() => void> = [];

  constructor(private readonly sink: FramedSink, bin: string, maxWindowLog: number) {
    const out = childOutput();
    this.child = spawn(bin, ['-d', '-c', '-q', `--memory=${2 ** maxWindowLog}`], { stdio: ['pipe', out.stdio, 'pipe'] }) as typeof this.child;
    if (!this.child.stdin || !this.child.stderr || (out.stdio === 'pipe' && !this.child.stdout)) {
      out.abandon();
      this.child.once('error', () => {});
      throw new CosiError('COSI_ERR_IO', `cannot start ${bin}: no file descriptors or processes left; retry later`);
    }
    this.child.stdin.on('error', () => {});
    this.child.stdin.on('drain', () => this.wake());
    this.child.stderr.setEncoding('utf8').on('data', (s: string) => (this.stderr = (this.stderr + s).slice(-STDERR_KEEP)));
    this.stdout = out.start(this.child.stdout, (b) => this.output(b));
    // The output may still be in flight when the process is gone: a lane is over once both are.
    const drained = new Promise<void>((resolve) => this.stdout.once('close', () => resolve()));
    const exited = new Promise<number | null>((resolve) => {
      this.child.once('error', (err) => {
        this.fail(new CosiError('COSI_ERR_UNSUPPORTED', `cannot run ${bin}: ${(err as NodeJS.ErrnoException).code ?? err.message}`));
        this.stdout.destroy();
        resolve(null);
      });
      this.child.once('close', (code) => {
        if (code !== 0) this.fail(new CosiError('COSI_ERR_ZSTD', `corrupt zstd data in ${this.sink.label}${this.where()}: ${this.stderr.trim().split('\n').pop() || `zstd exited with status ${code}`}`));
        this.wake();
        resolve(code);
      });
    });
    this.exited = Promise.all([exited, drained]).then(([code]) => code);
  }

  /** Queued input bytes the process has not taken yet. */
  get backlog(): number {
    return this.child.stdin.writableLength;
  }

  start(frame: SeekFrame, sized: boolean): void {
    this.queue.push({ frame, out: 0 });
    this.padNext = sized;
  }

  send(piece: Buffer): void {
    this.child.stdin.write(piece);
  }

  endFrame(): void {
    if (this.padNext) {
      this.queue.push({ frame: undefined, out: 0 });
      this.child.stdin.write(PAD_FRAME);
    }
    this.child.stdin.write(FILLER);
  }

  /** Resolves once the backlog is at most `max` bytes, or the lane failed. */
  async until(max: number): Promise<void> {
    while (!this.failure && this.backlog > max) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  async finish(): Promise<void> {
    this.child.stdin.end();
    await this.exited;
    if (this.failure) throw this.failure;
    const left = this.queue[0]?.frame;
    if (left) throw seekTableError(`${this.sink.label}: seek table entry ${left.index} lists ${left.decompressedSize} decompressed bytes, its frame gave ${this.queue[0]!.out}`);
  }

  kill(): void {
    this.child.kill('SIGKILL');
    this.stdout.destroy();
  }

  private output(b: Buffer): void {
    if (this.failure) return;
    let off = 0;
    try {
      while (off < b.length) {
        const head = this.queue[0];
        if (!head) throw seekTableError(`${this.sink.label}: frames decode to more bytes than the seek table lists`);
        const size = head.frame?.decompressedSize ?? PAD;
        const n = Math.min(b.length - off, size - head.out);
        if (n > 0 && head.frame) this.sink.place(head.frame, head.out, b.subarray(off, off + n));
        head.out += n;
        off += n;
        if (head.out === size) {
          this.queue.shift();
          if (head.frame) this.sink.frameDone(head.frame);
        }
      }
    } catch (err) {
      this.fail(err as Error);
      this.kill();
    }
  }

  private where(): string {
    const f = this.queue[0]?.frame;
    return f ? ` (frame ${f.index}, compressed bytes ${f.compressedOffset}-${f.compressedOffset + f.compressedSize})` : '';
  }

  fail(err: Error): void {
    this.failure ??= err;
    this.wake();
    this.sink.laneFailed(err);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

export class FramedSink extends Writable implements LaneOwner {
  readonly label: string;
  private readonly lanes: DecodeLane[] = [];
  private readonly policy: DecodePolicy;
  /** Input a lane may hold queued: one whole compressed frame (one lane: SINGLE_LANE_BACKLOG). */
  private readonly backlogMax: number;
  private pos = 0;
  private index = 0;
  private dealt = 0;
  private head: Buffer = Buffer.alloc(0);
  private lane: DecodeLane | undefined;
  private skippable = false;
  private scanner: FrameScanner | undefined;
  private failure: Error | undefined;

  constructor(private readonly opts: FramedSinkOptions) {
    super({ highWaterMark: 1 << 20 });
    this.label = opts.label;
    // A resumed fetch starts at a later frame.
    this.pos = opts.frames[0]?.compressedOffset ?? 0;
    this.policy = new DecodePolicy({ maxWindowLog: opts.maxWindowLog, backend: 'zstd' });
    // One lane has no other lane to let start: a short queue keeps its input ring small (fresh memory is costly here).
    this.backlogMax = opts.threads > 1 ? Math.max(1 << 20, ...opts.frames.map((f) => f.compressedSize)) : SINGLE_LANE_BACKLOG;
    const kind = laneKind();
    const bin = zstdProgram();
    if (!kind || (kind === 'zstd' && !bin)) throw new CosiError('COSI_ERR_UNSUPPORTED', 'framed images decode in lanes with node:zlib (Node >= 22.15) or the zstd program; install zstd');
    try {
      for (let i = 0; i < Math.max(1, opts.threads); i++) {
        this.lanes.push(kind === 'node' ? new WorkerLane(this, { target: opts.target, maxWindowLog: opts.maxWindowLog, backlogMax: this.backlogMax }) : new ProcessLane(this, bin!, opts.maxWindowLog));
      }
    } catch (err) {
      for (const l of this.lanes) l.kill();
      throw err;
    }
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.consume(chunk).then(() => cb(), (err: unknown) => cb(err as Error));
  }

  private async consume(chunk: Buffer): Promise<void> {
    let off = 0;
    const { frames } = this.opts;
    while (off < chunk.length && this.index < frames.length) {
      if (this.failure) throw this.failure;
      const f = frames[this.index]!;
      const end = f.compressedOffset + f.compressedSize;
      const piece = chunk.subarray(off, off + Math.min(chunk.length - off, end - this.pos));
      this.feed(f, piece);
      this.pos += piece.length;
      off += piece.length;
      if (this.pos === end) this.endFrame(f);
    }
    // Bytes past the last frame are the table, read and checked before the transfer began.
    for (const l of this.lanes) await l.until(this.backlogMax);
    if (this.failure) throw this.failure;
  }

  private feed(f: SeekFrame, piece: Buffer): void {
    if (this.lane) return this.toLane(f, piece);
    if (this.skippable) return;
    this.head = this.head.length === 0 ? piece : Buffer.concat([this.head, piece]);
    const h = readFrameHeader(this.head);
    if (h === undefined) return;
    if (h.kind === 'skippable') {
      if (h.size !== f.compressedSize || f.decompressedSize !== 0) throw this.lie(f, `a skippable frame of ${h.size} bytes sits where the table lists ${f.compressedSize} bytes decoding to ${f.decompressedSize}`);
      this.skippable = true;
    } else {
      if (h.contentSize !== undefined && h.contentSize !== f.decompressedSize) throw this.lie(f, `holds a frame declaring ${h.contentSize} bytes where the table lists ${f.decompressedSize}`);
      this.lane = this.lanes[this.dealt++ % this.lanes.length]!;
      this.lane.start(f, h.contentSize !== undefined);
      this.scanner = new FrameScanner(this.policy.checkHeader, false);
      this.toLane(f, this.head);
    }
    this.head = Buffer.alloc(0);
  }

  private toLane(f: SeekFrame, piece: Buffer): void {
    this.scanner!.feed(piece);
    if (this.scanner!.framesSeen > 1) throw this.lie(f, 'covers more than one frame');
    this.lane!.send(piece);
  }

  private endFrame(f: SeekFrame): void {
    if (!this.lane && !this.skippable) throw this.lie(f, `is too short to hold a frame header (${f.compressedSize} bytes)`);
    if (this.scanner && !this.scanner.atBoundary) throw this.lie(f, 'ends inside its frame');
    this.lane?.endFrame();
    if (this.skippable) this.frameDone(f);
    this.lane = undefined;
    this.skippable = false;
    this.scanner = undefined;
    this.index++;
  }

  /** Lane output: `bytes` at `at` within frame `f`, written where the frame belongs. */
  place(f: SeekFrame, at: number, bytes: Buffer): void {
    const t = this.opts.target;
    const w = new TargetWriter({ ...t, position: t.position + f.decompressedOffset + at, limit: undefined });
    w.put(bytes);
    this.opts.onWritten(w.take());
  }

  wrote(r: WriteReport): void {
    this.opts.onWritten(r);
  }

  frameDone(f: SeekFrame): void {
    this.opts.onFrameDone?.(f.index);
  }

  laneFailed(err: Error): void {
    this.failure ??= err;
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.index < this.opts.frames.length) {
      cb(new CosiError('COSI_ERR_TRUNCATED', `${this.label}: the entry ends inside frame ${this.index} of its seek table`));
      return;
    }
    Promise.all(this.lanes.map((l) => l.finish())).then(
      () => cb(this.failure ?? null),
      (err: unknown) => cb(this.failure ?? (err as Error)),
    );
  }

  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    for (const l of this.lanes) l.kill();
    // The target's fd must not be written after the caller closes it: wait for every lane to be gone.
    Promise.all(this.lanes.map((l) => l.exited)).then(() => cb(err));
  }

  private lie(f: SeekFrame, what: string): CosiError {
    return seekTableError(`${this.label}: seek table entry ${f.index} (compressed bytes ${f.compressedOffset}-${f.compressedOffset + f.compressedSize}) ${what}`);
  }
}
