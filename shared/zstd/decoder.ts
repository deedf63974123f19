/**
 * The decoder stream: compressed bytes in (any number of zstd and skippable
 * frames), decompressed bytes out, with backpressure and a hard output cap.
 *
 * Both backends see the input only through our own frame scanner. That is what
 * makes them behave the same: node:zlib stops after the first frame and chokes
 * on a leading skippable frame, fzstd has its own window ceiling, and neither
 * enforces our window policy or an output cap.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { CosiError } from '../errors.js';
import { FzstdFrameDecoder, hasNodeZstd, NodeFrameDecoder, zstdError, type Emit, type FrameDecoder } from './backends.js';
import { BIG_CHUNK, FrameScanner, FZSTD_MAX_WINDOW, type FrameHeader, type ScanEvent, type ZstdBackend } from './frame.js';

// ---------------------------------------------------------------------------
// The decoder stream


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
  private frameNo = 0;
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
        this.frameNo = this.scanner.framesSeen;
        this.frame =
          this.backend === 'node' ? new NodeFrameDecoder(this.maxWindowLog, this.deliver) : new FzstdFrameDecoder(this.deliver);
        await this.frame.write(ev.bytes);
      } else if (ev.t === 'data') {
        await this.frame!.write(ev.bytes);
      } else {
        const frame = this.frame!;
        await frame.finish();
        this.frame = undefined;
        const declared = this.frameHeader!.contentSize;
        // fzstd does not check Frame_Content_Size; do it here for both.
        if (declared !== undefined && declared !== this.frameOut) {
          throw new CosiError(
            'COSI_ERR_ZSTD',
            `corrupt zstd data: frame decoded to ${this.frameOut} bytes, its header declares ${declared}`,
          );
        }
        // Checked before the chunk is acknowledged, so a bad frame can never end the stream normally.
        const actual = ev.checksum === undefined ? undefined : frame.contentChecksum();
        if (actual !== undefined && actual !== ev.checksum) {
          throw new CosiError(
            'COSI_ERR_ZSTD',
            `zstd content checksum mismatch in frame ${this.frameNo}: stored ${hex32(ev.checksum!)}, ` +
              `decoded data hashes to ${hex32(actual)}`,
            { details: { frame: this.frameNo, stored: ev.checksum, actual } },
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

const hex32 = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;

/**
 * Transform from compressed bytes (any number of zstd and skippable frames) to
 * decompressed bytes, with backpressure and a hard output cap.
 */
export function createZstdDecoder(opts: ZstdDecoderOptions): Transform {
  return new ZstdDecoder(opts);
}
