/**
 * zstd framing (RFC 8878): frame and skippable-frame headers, and a scanner
 * that walks block headers so the decoder can hand each backend exactly one
 * frame and refuse oversized windows before anything is allocated.
 */
import { CosiError } from '../errors.js';

export const FRAME_MAGIC = 0xfd2fb528;
export const SKIPPABLE_MIN = 0x184d2a50;
const SKIPPABLE_MASK = 0xfffffff0;
/** Block_Maximum_Size in RFC 8878: no block carries more than 128 KiB. */
export const MAX_BLOCK = 128 * 1024;
/** fzstd rejects any window above this (about 2046 MiB), so 2^31 windows need node:zlib. */
export const FZSTD_MAX_WINDOW = 2145386496;
export const BIG_CHUNK = 1 << 20;

/** node:zlib in process, the zstd program in a child process, or fzstd (JavaScript). */
export type ZstdBackend = 'node' | 'zstd' | 'fzstd';

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

export function u32le(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

// ---------------------------------------------------------------------------
// Frame scanner: splits the compressed byte stream into per-frame pieces.

export type ScanEvent =
  | { t: 'start'; header: Extract<FrameHeader, { kind: 'frame' }>; bytes: Buffer }
  | { t: 'data'; bytes: Buffer }
  /** `checksum`: the frame's stored Content_Checksum (low 32 bits of XXH64), when it has one. */
  | { t: 'end'; checksum?: number };

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
export class FrameScanner {
  private state = S.Header;
  private scratch = Buffer.alloc(18); // longest frame header
  private scratchLen = 0;
  private remaining = 0; // bytes left in the current skip/body/checksum
  private blockHeader = 0;
  private blockHeaderGot = 0;
  private lastBlock = false;
  private hasChecksum = false;
  private checksum = 0;
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
          if (this.state === S.Checksum) {
            // little-endian, possibly split across chunks
            for (let i = 0; i < n; i++) this.checksum += chunk[pos + i]! * 2 ** (8 * (4 - this.remaining + i));
          }
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
      this.checksum = 0;
    } else {
      flushRun(pos);
      events.push(this.state === S.Checksum ? { t: 'end', checksum: this.checksum } : { t: 'end' });
      this.state = S.Header;
    }
  }
}
