/**
 * The decoder stream: compressed bytes in (any number of zstd and skippable
 * frames), decompressed bytes out, with backpressure and a hard output cap.
 *
 * Both backends see the input only through our own frame scanner. That is what
 * makes them behave the same: node:zlib stops after the first frame and chokes
 * on a leading skippable frame, fzstd has its own window ceiling, and neither
 * enforces our window policy or an output cap.
 *
 * This engine decodes on the main thread's event loop (node:zlib in the
 * thread pool) and hands out buffers the consumer may keep. Bulk writers that
 * can give buffers back use sink.ts instead, which decodes in a worker.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { FzstdFrameDecoder, NodeFrameDecoder, zstdError, type Emit, type FrameDecoder } from './backends.js';
import { BIG_CHUNK, FrameScanner, type ScanEvent } from './frame.js';
import { DecodePolicy, type ZstdDecoderOptions } from './policy.js';
import { ProcessDecoder } from './process.js';

export { decoderName, zstdBackend, type ZstdDecoderOptions } from './policy.js';

class ZstdDecoder extends Transform {
  private readonly policy: DecodePolicy;
  private readonly scanner: FrameScanner;
  private frame: FrameDecoder | undefined;

  constructor(policy: DecodePolicy) {
    super({ readableHighWaterMark: BIG_CHUNK });
    this.policy = policy;
    this.scanner = new FrameScanner(this.policy.checkHeader, this.policy.backend === 'fzstd');
  }

  /** Every decoded byte passes here: counts it, caps it, pushes it. */
  private readonly deliver: Emit = (bytes) => {
    this.policy.count(bytes.length);
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
        this.policy.startFrame(ev.header, this.scanner.framesSeen);
        this.frame =
          this.policy.backend === 'node' ? new NodeFrameDecoder(this.policy.maxWindowLog, this.deliver) : new FzstdFrameDecoder(this.deliver);
        await this.frame.write(ev.bytes);
      } else if (ev.t === 'data') {
        await this.frame!.write(ev.bytes);
      } else {
        const frame = this.frame!;
        await frame.finish();
        this.frame = undefined;
        this.policy.endFrame();
        // Checked before the chunk is acknowledged, so a bad frame can never end the stream normally.
        const actual = ev.checksum === undefined ? undefined : frame.contentChecksum();
        if (actual !== undefined && actual !== ev.checksum) throw this.policy.checksumMismatch(ev.checksum!, actual);
      }
    }
  }

  override _flush(cb: TransformCallback): void {
    cb(this.policy.finish(this.scanner));
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
  const policy = new DecodePolicy(opts);
  return policy.backend === 'zstd' ? new ProcessDecoder(policy) : new ZstdDecoder(policy);
}
