/**
 * zstd behind one small interface: a streaming decoder (node:zlib when the
 * runtime has it, fzstd otherwise) and a file-range encoder for the writer.
 *
 * Both decoder backends see the input only through our own frame scanner, which
 * walks frame and block headers. That is what makes them behave the same:
 * node:zlib stops after the first frame and chokes on a leading skippable frame,
 * fzstd has its own window ceiling, and neither enforces our window policy or an
 * output cap. The scanner skips skippable frames, refuses oversized windows
 * before any allocation, and hands each backend exactly one frame at a time.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable, Transform, type TransformCallback, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import { Decompress } from 'fzstd';
import { CosiError, isCosiError } from './errors.js';

const FRAME_MAGIC = 0xfd2fb528;
const SKIPPABLE_MIN = 0x184d2a50;
const SKIPPABLE_MASK = 0xfffffff0;
/** Block_Maximum_Size in RFC 8878: no block carries more than 128 KiB. */
const MAX_BLOCK = 128 * 1024;
/** fzstd rejects any window above this (about 2046 MiB), so 2^31 windows need node:zlib. */
const FZSTD_MAX_WINDOW = 2145386496;
const BIG_CHUNK = 1 << 20;

export type ZstdBackend = 'node' | 'fzstd';

export type FrameHeader =
  | { kind: 'frame'; windowSize: number; windowLog: number; contentSize?: number; headerSize: number }
  | { kind: 'skippable'; size: number /* total including 8-byte header */ };

// ---------------------------------------------------------------------------
// Frame headers

/**
 * Parses the frame header starting at `offset`. Returns undefined when more
 * bytes are needed; throws COSI_ERR_ZSTD when the bytes cannot start a frame.
 */
export function readFrameHeader(buf: Uint8Array, offset = 0): FrameHeader | undefined {
  const avail = buf.length - offset;
  if (avail < 4) return undefined;
  const magic = u32le(buf, offset);
  if ((magic & SKIPPABLE_MASK) >>> 0 === SKIPPABLE_MIN) {
    if (avail < 8) return undefined;
    return { kind: 'skippable', size: 8 + u32le(buf, offset + 4) };
  }
  if (magic !== FRAME_MAGIC) {
    throw new CosiError('COSI_ERR_ZSTD', `not a zstd frame: magic 0x${magic.toString(16).padStart(8, '0')}`);
  }
  if (avail < 5) return undefined;
  const fhd = buf[offset + 4]!;
  const fcsFlag = fhd >> 6;
  const singleSegment = (fhd >> 5) & 1;
  if (fhd & 0x08) throw new CosiError('COSI_ERR_ZSTD', 'corrupt zstd frame header: reserved bit set');
  const didBytes = [0, 1, 2, 4][fhd & 3]!;
  const fcsBytes = fcsFlag === 0 ? singleSegment : 1 << fcsFlag;
  const headerSize = 5 + (singleSegment ? 0 : 1) + didBytes + fcsBytes;
  if (avail < headerSize) return undefined;

  let p = offset + 5;
  let windowSize = 0;
  if (!singleSegment) {
    const wd = buf[p++]!;
    const base = 2 ** (10 + (wd >> 3));
    windowSize = base + (base / 8) * (wd & 7);
  }
  let dictId = 0;
  for (let i = 0; i < didBytes; i++) dictId += buf[p + i]! * 2 ** (8 * i);
  p += didBytes;
  let contentSize: number | undefined;
  if (fcsBytes > 0) {
    let v = 0;
    for (let i = 0; i < fcsBytes; i++) v += buf[p + i]! * 2 ** (8 * i);
    contentSize = fcsBytes === 2 ? v + 256 : v;
  }
  if (dictId !== 0) {
    throw new CosiError('COSI_ERR_ZSTD', `zstd frame needs dictionary ${dictId}; dictionaries are not supported`);
  }
  // A single-segment frame's window is its whole content (RFC 8878 3.1.1.1.2).
  if (singleSegment) windowSize = contentSize!;
  const windowLog = Math.max(10, Math.ceil(Math.log2(Math.max(1, windowSize))));
  return contentSize === undefined
    ? { kind: 'frame', windowSize, windowLog, headerSize }
    : { kind: 'frame', windowSize, windowLog, contentSize, headerSize };
}

function u32le(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

// ---------------------------------------------------------------------------
// Frame scanner: splits the compressed byte stream into per-frame pieces.

type ScanEvent =
  | { t: 'start'; header: Extract<FrameHeader, { kind: 'frame' }>; bytes: Buffer }
  | { t: 'data'; bytes: Buffer }
  | { t: 'end' };

const enum S {
  Header, // between frames: collecting a frame or skippable header
  Skip, // inside a skippable frame's payload
  BlockHeader,
  BlockBody,
  Checksum,
}

/**
 * Walks frame and block headers (3 bytes per block, so the cost is negligible)
 * and reports frame data as large contiguous runs of the input chunks.
 */
class FrameScanner {
  private state = S.Header;
  private scratch = Buffer.alloc(18); // longest frame header
  private scratchLen = 0;
  private remaining = 0; // bytes left in the current skip/body/checksum
  private blockHeader = 0;
  private blockHeaderGot = 0;
  private lastBlock = false;
  private hasChecksum = false;
  framesSeen = 0;

  /**
   * @param splitBlocks end a data run at every block end, so a consumer that
   *   decodes a whole run synchronously (fzstd) produces at most one block per run.
   */
  constructor(
    private readonly onFrameHeader: (h: Extract<FrameHeader, { kind: 'frame' }>) => void,
    private readonly splitBlocks: boolean,
  ) {}

  /** True when the input so far ends exactly on a frame boundary. */
  get atBoundary(): boolean {
    return this.state === S.Header && this.scratchLen === 0;
  }

  feed(chunk: Buffer): ScanEvent[] {
    const events: ScanEvent[] = [];
    let pos = 0;
    let runStart = -1; // start of the frame data run inside this chunk
    const flushRun = (end: number) => {
      if (runStart >= 0 && end > runStart) events.push({ t: 'data', bytes: chunk.subarray(runStart, end) });
      runStart = -1;
    };
    while (pos < chunk.length) {
      switch (this.state) {
        case S.Header: {
          const take = Math.min(chunk.length - pos, this.scratch.length - this.scratchLen);
          chunk.copy(this.scratch, this.scratchLen, pos, pos + take);
          const before = this.scratchLen;
          this.scratchLen += take;
          const h = readFrameHeader(this.scratch.subarray(0, this.scratchLen));
          if (h === undefined) {
            pos += take;
            break;
          }
          const used = h.kind === 'frame' ? h.headerSize : 8;
          pos += used - before; // give back what the header did not use
          this.scratchLen = 0;
          if (h.kind === 'skippable') {
            this.remaining = h.size - 8;
            this.state = this.remaining > 0 ? S.Skip : S.Header;
          } else {
            this.onFrameHeader(h);
            this.framesSeen++;
            events.push({ t: 'start', header: h, bytes: Buffer.from(this.scratch.subarray(0, used)) });
            this.hasChecksum = false;
            this.state = S.BlockHeader;
            this.blockHeaderGot = 0;
            this.blockHeader = 0;
            runStart = pos;
            // Content_Checksum_flag lives in the descriptor byte we just copied.
            this.hasChecksum = ((this.scratch[4]! >> 2) & 1) === 1;
          }
          break;
        }
        case S.Skip: {
          const n = Math.min(this.remaining, chunk.length - pos);
          pos += n;
          this.remaining -= n;
          if (this.remaining === 0) this.state = S.Header;
          break;
        }
        case S.BlockHeader: {
          if (runStart < 0) runStart = pos;
          while (this.blockHeaderGot < 3 && pos < chunk.length) {
            this.blockHeader |= chunk[pos++]! << (8 * this.blockHeaderGot++);
          }
          if (this.blockHeaderGot < 3) break;
          const bh = this.blockHeader;
          this.blockHeaderGot = 0;
          this.blockHeader = 0;
          this.lastBlock = (bh & 1) === 1;
          const type = (bh >> 1) & 3;
          const size = bh >>> 3;
          if (type === 3) throw new CosiError('COSI_ERR_ZSTD', 'corrupt zstd data: reserved block type');
          if (size > MAX_BLOCK) throw new CosiError('COSI_ERR_ZSTD', `corrupt zstd data: block of ${size} bytes`);
          this.remaining = type === 1 ? 1 : size;
          this.state = S.BlockBody;
          // An empty raw block (the whole of an empty frame) has no body to wait for.
          if (this.remaining === 0) this.pieceDone(pos, flushRun, events);
          break;
        }
        case S.BlockBody:
        case S.Checksum: {
          if (runStart < 0) runStart = pos;
          const n = Math.min(this.remaining, chunk.length - pos);
          pos += n;
          this.remaining -= n;
          if (this.remaining === 0) this.pieceDone(pos, flushRun, events);
          break;
        }
      }
    }
    flushRun(pos);
    return events;
  }

  /** A block body or the checksum has been fully seen: move on. */
  private pieceDone(pos: number, flushRun: (end: number) => void, events: ScanEvent[]): void {
    if (this.state === S.BlockBody && !this.lastBlock) {
      this.state = S.BlockHeader;
      if (this.splitBlocks) flushRun(pos);
    } else if (this.state === S.BlockBody && this.hasChecksum) {
      this.state = S.Checksum;
      this.remaining = 4;
    } else {
      flushRun(pos);
      events.push({ t: 'end' });
      this.state = S.Header;
    }
  }
}

// ---------------------------------------------------------------------------
// Backends: one instance decodes exactly one frame.

interface FrameDecoder {
  write(bytes: Buffer): Promise<void> | void;
  finish(): Promise<void> | void;
  /** Called when the consumer wants more output. */
  resume(): void;
  destroy(): void;
}

/** Output sink: returns false when the consumer is full (the backend should pause). */
type Emit = (bytes: Buffer) => boolean;

function zstdError(err: unknown): Error {
  if (isCosiError(err)) return err;
  const msg = err instanceof Error ? err.message : String(err);
  return new CosiError('COSI_ERR_ZSTD', `corrupt zstd data: ${msg}`, { cause: err });
}

class NodeFrameDecoder implements FrameDecoder {
  private readonly inner: zlib.ZstdDecompress;
  private failure: Error | undefined;
  private ended = false;
  private wake: (() => void) | undefined;
  private fed = 0;

  constructor(maxWindowLog: number, emit: Emit) {
    this.inner = zlib.createZstdDecompress({
      // 16 KiB default output chunks cost about 3x in throughput.
      chunkSize: BIG_CHUNK,
      params: { [zlib.constants.ZSTD_d_windowLogMax]: Math.min(31, Math.max(10, maxWindowLog)) },
    });
    this.inner.on('data', (b: Buffer) => {
      if (this.failure) return;
      try {
        if (!emit(b)) this.inner.pause();
      } catch (err) {
        this.fail(err as Error);
      }
    });
    this.inner.on('error', (err) => this.fail(zstdError(err)));
    this.inner.on('end', () => {
      this.ended = true;
      this.notify();
    });
    this.inner.on('drain', () => this.notify());
  }

  async write(bytes: Buffer): Promise<void> {
    this.check();
    this.fed += bytes.length;
    if (!this.inner.write(bytes)) await this.until(() => !this.inner.writableNeedDrain);
  }

  async finish(): Promise<void> {
    this.check();
    this.inner.end();
    await this.until(() => this.ended);
    // node:zlib silently ends at the first frame end; we feed one frame, so it must eat it all.
    if (this.inner.bytesWritten !== this.fed) {
      throw new CosiError(
        'COSI_ERR_ZSTD',
        `corrupt zstd data: decoder stopped after ${this.inner.bytesWritten} of ${this.fed} frame bytes`,
      );
    }
  }

  resume(): void {
    if (!this.failure && !this.ended) this.inner.resume();
  }

  destroy(): void {
    this.inner.destroy();
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.inner.destroy();
    this.notify();
  }

  private check(): void {
    if (this.failure) throw this.failure;
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private async until(cond: () => boolean): Promise<void> {
    for (;;) {
      this.check();
      if (cond()) return;
      await new Promise<void>((r) => (this.wake = r));
    }
  }
}

class FzstdFrameDecoder implements FrameDecoder {
  private readonly d: Decompress;
  private full = false;
  private wake: (() => void) | undefined;

  constructor(emit: Emit) {
    this.d = new Decompress((data) => {
      if (data.length === 0) return;
      // fzstd hands out a fresh array per block, so wrapping without a copy is safe.
      if (!emit(Buffer.from(data.buffer, data.byteOffset, data.length))) this.full = true;
    });
  }

  /**
   * fzstd decodes everything pushed in one synchronous call, so memory stays
   * bounded only because the scanner hands us at most one block per call
   * (<= 128 KiB of output) and we wait for the consumer before the next.
   */
  async write(bytes: Buffer): Promise<void> {
    if (this.full) await new Promise<void>((r) => (this.wake = r));
    this.push(bytes, false);
  }

  finish(): void {
    this.push(new Uint8Array(0), true);
  }

  resume(): void {
    this.full = false;
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  destroy(): void {}

  private push(chunk: Uint8Array, final: boolean): void {
    try {
      this.d.push(chunk, final);
    } catch (err) {
      throw zstdError(err);
    }
  }
}

// ---------------------------------------------------------------------------
// The decoder stream

export function hasNodeZstd(): boolean {
  return typeof zlib.createZstdDecompress === 'function' && zlib.constants.ZSTD_d_windowLogMax !== undefined;
}

/** What backend 'auto' picks. */
export function zstdBackend(): ZstdBackend {
  return hasNodeZstd() ? 'node' : 'fzstd';
}

export interface ZstdDecoderOptions {
  /** Frames declaring a larger window than 2^maxWindowLog are refused. */
  maxWindowLog: number;
  /** Exact expected output size; more or less is COSI_ERR_SIZE_MISMATCH. */
  expectedSize?: number;
  backend?: 'auto' | ZstdBackend;
}

class ZstdDecoder extends Transform {
  private readonly backend: ZstdBackend;
  private readonly maxWindowLog: number;
  private readonly expectedSize: number | undefined;
  private readonly scanner: FrameScanner;
  private frame: FrameDecoder | undefined;
  private frameHeader: Extract<FrameHeader, { kind: 'frame' }> | undefined;
  private frameOut = 0;
  private declaredTotal = 0;
  private total = 0;

  constructor(opts: ZstdDecoderOptions) {
    super({ readableHighWaterMark: BIG_CHUNK });
    const backend = opts.backend ?? 'auto';
    if (backend === 'node' && !hasNodeZstd()) {
      throw new CosiError('COSI_ERR_UNSUPPORTED', `node:zlib has no zstd on Node ${process.version} (needs >= 22.15)`);
    }
    if (!Number.isInteger(opts.maxWindowLog) || opts.maxWindowLog < 10 || opts.maxWindowLog > 31) {
      throw new CosiError('COSI_ERR_USAGE', `maxWindowLog must be an integer from 10 to 31, got ${opts.maxWindowLog}`);
    }
    this.backend = backend === 'auto' ? zstdBackend() : backend;
    this.maxWindowLog = opts.maxWindowLog;
    this.expectedSize = opts.expectedSize;
    this.scanner = new FrameScanner((h) => this.checkHeader(h), this.backend === 'fzstd');
  }

  private checkHeader(h: Extract<FrameHeader, { kind: 'frame' }>): void {
    if (h.windowSize > 2 ** this.maxWindowLog) {
      throw new CosiError(
        'COSI_ERR_ZSTD',
        `zstd frame needs a ${h.windowSize}-byte window (windowLog ${h.windowLog}), ` +
          `over the allowed maxWindowLog ${this.maxWindowLog} (${2 ** this.maxWindowLog} bytes)`,
        { details: { windowSize: h.windowSize, windowLog: h.windowLog, maxWindowLog: this.maxWindowLog } },
      );
    }
    if (this.backend === 'fzstd' && h.windowSize > FZSTD_MAX_WINDOW) {
      throw new CosiError(
        'COSI_ERR_UNSUPPORTED',
        `zstd frame needs a ${h.windowSize}-byte window (windowLog ${h.windowLog}); ` +
          'the fzstd decoder stops at 2046 MiB: run on Node >= 22.15 to use node:zlib',
      );
    }
    // A declared content size lets a bomb be refused before decoding a byte.
    if (h.contentSize !== undefined && this.expectedSize !== undefined) {
      this.declaredTotal += h.contentSize;
      if (this.declaredTotal > this.expectedSize) {
        throw this.tooLong(`its frame headers declare at least ${this.declaredTotal} bytes`);
      }
    }
  }

  private tooLong(what: string): CosiError {
    return new CosiError('COSI_ERR_SIZE_MISMATCH', `zstd output is longer than the expected ${this.expectedSize} bytes: ${what}`, {
      details: { expected: this.expectedSize },
    });
  }

  /** Every decoded byte passes here: counts it, caps it, pushes it. */
  private readonly deliver: Emit = (bytes) => {
    if (this.expectedSize !== undefined && this.total + bytes.length > this.expectedSize) {
      throw this.tooLong(`decoding passed ${this.expectedSize} bytes`);
    }
    this.total += bytes.length;
    this.frameOut += bytes.length;
    return this.push(bytes);
  };

  override _read(size: number): void {
    this.frame?.resume();
    super._read(size);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    let events: ScanEvent[];
    try {
      events = this.scanner.feed(chunk);
    } catch (err) {
      cb(zstdError(err));
      return;
    }
    this.run(events).then(() => cb(), (err: unknown) => {
      this.frame?.destroy();
      cb(zstdError(err));
    });
  }

  private async run(events: ScanEvent[]): Promise<void> {
    for (const ev of events) {
      if (ev.t === 'start') {
        this.frameHeader = ev.header;
        this.frameOut = 0;
        this.frame =
          this.backend === 'node' ? new NodeFrameDecoder(this.maxWindowLog, this.deliver) : new FzstdFrameDecoder(this.deliver);
        await this.frame.write(ev.bytes);
      } else if (ev.t === 'data') {
        await this.frame!.write(ev.bytes);
      } else {
        await this.frame!.finish();
        this.frame = undefined;
        const declared = this.frameHeader!.contentSize;
        // fzstd does not check Frame_Content_Size; do it here for both.
        if (declared !== undefined && declared !== this.frameOut) {
          throw new CosiError(
            'COSI_ERR_ZSTD',
            `corrupt zstd data: frame decoded to ${this.frameOut} bytes, its header declares ${declared}`,
          );
        }
      }
    }
  }

  override _flush(cb: TransformCallback): void {
    if (!this.scanner.atBoundary) {
      cb(new CosiError('COSI_ERR_ZSTD', 'truncated zstd data: input ends inside a frame'));
    } else if (this.scanner.framesSeen === 0) {
      cb(new CosiError('COSI_ERR_ZSTD', 'no zstd frame in input'));
    } else if (this.expectedSize !== undefined && this.total !== this.expectedSize) {
      cb(
        new CosiError(
          'COSI_ERR_SIZE_MISMATCH',
          `zstd output is ${this.total} bytes, expected ${this.expectedSize}`,
          { details: { expected: this.expectedSize, actual: this.total } },
        ),
      );
    } else {
      cb();
    }
  }

  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    this.frame?.destroy();
    this.frame = undefined;
    cb(err);
  }
}

/**
 * Transform from compressed bytes (any number of zstd and skippable frames) to
 * decompressed bytes, with backpressure and a hard output cap.
 */
export function createZstdDecoder(opts: ZstdDecoderOptions): Transform {
  return new ZstdDecoder(opts);
}

// ---------------------------------------------------------------------------
// Encoding

let zstdProgram: boolean | undefined;
function hasZstdProgram(): boolean {
  zstdProgram ??= spawnSync('zstd', ['--version'], { stdio: 'ignore' }).status === 0;
  return zstdProgram;
}

export interface CompressOptions {
  level?: number;
  windowLog?: number;
  /** 16 bytes (the COSI id) stored in a leading skippable frame, as real writers do. */
  skippableId?: Buffer;
}

export interface CompressResult {
  compressedSize: number;
  uncompressedSize: number;
  /** SHA-384 (hex) of the bytes written, skippable frame included. */
  sha384: string;
  /** The window log the written frame declares (zstd shrinks it for small inputs). */
  windowLog: number;
}

/**
 * Compresses a byte range of a file into `output` as one zstd frame with
 * content size and checksum, streaming throughout.
 */
export async function compressFile(
  input: string | { path: string; offset: number; length: number },
  output: string,
  opts: CompressOptions = {},
): Promise<CompressResult> {
  const level = opts.level ?? 9;
  const windowLog = opts.windowLog ?? 27;
  if (!Number.isInteger(level) || level < 1 || level > 22) {
    throw new CosiError('COSI_ERR_USAGE', `zstd level must be an integer from 1 to 22, got ${level}`);
  }
  if (!Number.isInteger(windowLog) || windowLog < 10 || windowLog > 31) {
    throw new CosiError('COSI_ERR_USAGE', `zstd windowLog must be an integer from 10 to 31, got ${windowLog}`);
  }
  if (opts.skippableId !== undefined && opts.skippableId.length !== 16) {
    throw new CosiError('COSI_ERR_USAGE', `skippableId must be 16 bytes, got ${opts.skippableId.length}`);
  }
  const useNode = hasNodeZstd();
  if (!useNode && !hasZstdProgram()) {
    throw new CosiError(
      'COSI_ERR_UNSUPPORTED',
      'no zstd encoder: install the zstd package or run on Node >= 22.15',
    );
  }

  try {
    const src =
      typeof input === 'string' ? { path: input, offset: 0, length: (await stat(input)).size } : input;

    const hash = createHash('sha384');
    let compressedSize = 0;
    const head: Buffer[] = [];
    let headLen = 0;
    const out = createWriteStream(output);
    if (opts.skippableId) {
      const skip = Buffer.alloc(24);
      skip.writeUInt32LE(SKIPPABLE_MIN, 0);
      skip.writeUInt32LE(16, 4);
      opts.skippableId.copy(skip, 8);
      hash.update(skip);
      compressedSize += skip.length;
      out.write(skip);
    }
    // Hash exactly what goes to disk, and keep the frame header to learn the real window.
    const tap = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        compressedSize += chunk.length;
        if (headLen < 18) {
          head.push(chunk.subarray(0, 18 - headLen));
          headLen += Math.min(chunk.length, 18 - headLen);
        }
        cb(null, chunk);
      },
    });

    let readBytes = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        readBytes += chunk.length;
        cb(null, chunk);
      },
    });
    const source = (): Readable =>
      src.length === 0
        ? Readable.from([])
        : createReadStream(src.path, { start: src.offset, end: src.offset + src.length - 1, highWaterMark: BIG_CHUNK });

    if (useNode) {
      const c = zlib.constants;
      const enc = zlib.createZstdCompress({
        chunkSize: BIG_CHUNK,
        pledgedSrcSize: src.length,
        params: {
          [c.ZSTD_c_compressionLevel]: level,
          [c.ZSTD_c_windowLog]: windowLog,
          [c.ZSTD_c_enableLongDistanceMatching]: 1, // what `zstd --long` does
          [c.ZSTD_c_checksumFlag]: 1,
          [c.ZSTD_c_contentSizeFlag]: 1,
        },
      });
      await pipeline(source(), counter, enc, tap, out);
    } else {
      await compressWithProgram(source().pipe(counter), tap, out, level, windowLog, src.length);
    }

    if (readBytes !== src.length) {
      throw new CosiError('COSI_ERR_IO', `${src.path}: read ${readBytes} bytes, expected ${src.length}`);
    }
    const header = readFrameHeader(Buffer.concat(head));
    if (header?.kind !== 'frame') {
      throw new CosiError('COSI_ERR_INTERNAL', 'zstd encoder wrote no frame header');
    }
    return { compressedSize, uncompressedSize: src.length, sha384: hash.digest('hex'), windowLog: header.windowLog };
  } catch (err) {
    if (isCosiError(err)) throw err;
    const msg = err instanceof Error ? err.message : String(err);
    throw new CosiError('COSI_ERR_IO', `zstd compression failed: ${msg}`, { cause: err });
  }
}

async function compressWithProgram(
  input: Readable,
  tap: Transform,
  out: Writable,
  level: number,
  windowLog: number,
  length: number,
): Promise<void> {
  // --stream-size gives the frame a content size and lets zstd shrink the window, like a file input.
  const args = ['-q', '-c', `-${level}`, `--long=${windowLog}`, `--stream-size=${length}`];
  if (level > 19) args.unshift('--ultra');
  const child = spawn('zstd', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  try {
    await Promise.all([pipeline(input, child.stdin), pipeline(child.stdout, tap, out)]);
  } catch (err) {
    child.kill();
    await exited.catch(() => undefined);
    throw err;
  }
  const code = await exited;
  if (code !== 0) {
    throw new CosiError('COSI_ERR_IO', `zstd exited with status ${code}: ${stderr.trim().split('\n')[0] ?? ''}`);
  }
}
