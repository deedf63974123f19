/**
 * A tar header walker over any ByteSource. Streaming parsers (tar-stream)
 * hide where each entry lives; random access by range needs exactly that, so
 * this records, for every member, the offset of its headers and of its data.
 *
 * Handles USTAR (with prefix), PAX extended ('x') and global ('g') headers,
 * GNU long names ('L'/'K') and GNU base-256 sizes (members of 8 GiB and more),
 * and stops at the end-of-archive marker, ignoring whatever follows it.
 */
import { CosiError } from '../errors.js';
import type { ByteSource } from '../transport/source.js';

export const BLOCK = 512;

export type TarEntryType = 'file' | 'directory' | 'symlink' | 'hardlink' | 'other';

/** Where one archive member lives, so its bytes can be read by range without walking again. */
export interface TarEntry {
  /** Full path after applying PAX `path`, GNU long names and the USTAR prefix. */
  name: string;
  type: TarEntryType;
  /** The member's own typeflag ('0', '5', ...); extension headers are folded into the entry. */
  typeflag: string;
  /** Offset of the first header block that belongs to this entry (PAX/GNU extension headers included). */
  headerOffset: number;
  /** Offset of the entry's own USTAR header (the last header before the data). */
  ustarOffset: number;
  dataOffset: number;
  size: number;
  mode: number;
  mtime: number;
}

export interface TarIndex {
  entries: TarEntry[];
  /** Offset of the end-of-archive marker (two zero blocks). */
  endOffset: number;
  /** True when both zero blocks of the marker are present. */
  endMarkerComplete: boolean;
  /** Bytes after the end-of-archive marker (legal in COSI: footers, checksums). */
  trailingBytes: number;
}

/** One decoded 512-byte header, before extension headers are applied. */
export interface RawHeader {
  name: string;
  mode: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: string;
  ustar: 'posix' | 'gnu' | 'none';
}

// Extension payloads are tiny in practice; a cap keeps a hostile archive from making us buffer gigabytes.
const MAX_EXTENSION_BYTES = 1 << 20;
/** More entries than any disk has partitions by far: a bound on what a hostile archive can make us index. */
export const MAX_ENTRIES = 1_000_000;

function cstr(block: Uint8Array, start: number, len: number): string {
  let end = start;
  const stop = start + len;
  while (end < stop && block[end] !== 0) end++;
  return Buffer.from(block.buffer, block.byteOffset + start, end - start).toString('utf8');
}

function octal(block: Uint8Array, start: number, len: number, field: string, at: number): number {
  // GNU base-256: high bit of the first byte set, the rest a big-endian number (sizes >= 8 GiB).
  if (block[start]! & 0x80) {
    if (block[start] === 0xff) throw new CosiError('COSI_ERR_TAR', `tar header at ${at}: negative base-256 ${field}`);
    let v = block[start]! & 0x7f;
    for (let i = start + 1; i < start + len; i++) {
      v = v * 256 + block[i]!;
      if (v > Number.MAX_SAFE_INTEGER) throw new CosiError('COSI_ERR_TAR', `tar header at ${at}: ${field} too large`);
    }
    return v;
  }
  const text = cstr(block, start, len).replace(/ +$/, '').trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) {
    throw new CosiError('COSI_ERR_TAR', `tar header at ${at}: ${field} field is not octal (${JSON.stringify(text)})`);
  }
  return parseInt(text, 8);
}

function isZeroBlock(block: Uint8Array): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

function checksumOk(block: Uint8Array, at: number): boolean {
  const stored = octal(block, 148, 8, 'checksum', at);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  // Some old writers summed signed chars; both are accepted by GNU tar.
  return stored === unsigned || stored === signed;
}

/**
 * Decode one header block. Returns null for a zero block (end-of-archive marker).
 * `at` is only for messages.
 */
export function decodeHeader(block: Uint8Array, at = 0): RawHeader | null {
  if (block.length < BLOCK) throw new CosiError('COSI_ERR_TRUNCATED', `archive ends inside the tar header at ${at}`);
  if (isZeroBlock(block)) return null;
  if (!checksumOk(block, at)) throw new CosiError('COSI_ERR_TAR', `tar header at ${at}: bad checksum (not a tar archive, or corrupt)`);
  const magic = Buffer.from(block.buffer, block.byteOffset + 257, 8).toString('latin1');
  const ustar = magic === 'ustar\u000000' ? 'posix' : magic === 'ustar  \u0000' ? 'gnu' : magic.startsWith('ustar') ? 'posix' : 'none';
  let name = cstr(block, 0, 100);
  if (ustar === 'posix') {
    const prefix = cstr(block, 345, 155);
    if (prefix) name = `${prefix}/${name}`;
  }
  const tf = block[156] === 0 ? '0' : String.fromCharCode(block[156]!);
  return {
    name,
    mode: octal(block, 100, 8, 'mode', at),
    size: octal(block, 124, 12, 'size', at),
    mtime: octal(block, 136, 12, 'mtime', at),
    typeflag: tf,
    linkname: cstr(block, 157, 100),
    ustar,
  };
}

/** Parse PAX records ("<len> <key>=<value>\n"). */
export function parsePax(data: Uint8Array, at = 0): Map<string, string> {
  const out = new Map<string, string>();
  const buf = Buffer.from(data.buffer, data.byteOffset, data.length);
  let pos = 0;
  while (pos < buf.length) {
    if (buf[pos] === 0) break; // padding
    const sp = buf.indexOf(0x20, pos);
    if (sp < 0) throw new CosiError('COSI_ERR_TAR', `PAX header at ${at}: malformed record`);
    const len = Number(buf.toString('latin1', pos, sp));
    if (!Number.isInteger(len) || len <= sp - pos + 1 || pos + len > buf.length || buf[pos + len - 1] !== 0x0a) {
      throw new CosiError('COSI_ERR_TAR', `PAX header at ${at}: malformed record length`);
    }
    const rec = buf.toString('utf8', sp + 1, pos + len - 1);
    const eq = rec.indexOf('=');
    if (eq <= 0) throw new CosiError('COSI_ERR_TAR', `PAX header at ${at}: record without '='`);
    out.set(rec.slice(0, eq), rec.slice(eq + 1));
    pos += len;
  }
  return out;
}

function entryType(tf: string): TarEntryType {
  switch (tf) {
    case '0': case '7': return 'file';
    case '5': return 'directory';
    case '2': return 'symlink';
    case '1': return 'hardlink';
    default: return 'other';
  }
}

export function padded(size: number): number {
  return Math.ceil(size / BLOCK) * BLOCK;
}

/**
 * Reads a source in large aligned windows so that a walk over many small
 * members costs few reads (one HTTP request per window, not per header).
 */
export class ReadAhead {
  private buf: Buffer = Buffer.alloc(0);
  private start = 0;

  constructor(
    private readonly src: ByteSource,
    private readonly total: number,
    private readonly window = 64 * 1024,
    private readonly stats: { reads: number } = { reads: 0 },
  ) {}

  /** Prime the cache with bytes already fetched (e.g. the first read that found metadata.json). */
  seed(offset: number, bytes: Buffer): void {
    this.start = offset;
    this.buf = bytes;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    if (offset >= this.start && offset + length <= this.start + this.buf.length) {
      return this.buf.subarray(offset - this.start, offset - this.start + length);
    }
    const want = Math.min(Math.max(length, this.window), Math.max(0, this.total - offset));
    const got = await this.src.read(offset, want);
    this.stats.reads++;
    this.start = offset;
    this.buf = got;
    return got.subarray(0, Math.min(length, got.length));
  }
}

export interface WalkOptions {
  /** Read-ahead window; large for HTTP sources. */
  window?: number;
  /** Bytes already read from offset 0 (saves a request). */
  head?: Buffer;
  /** Stop early: return after this entry when it returns true (e.g. after metadata.json). */
  stopAfter?: (entry: TarEntry, index: number) => boolean;
  /** Start somewhere else than offset 0 (continuing a partial walk). */
  startOffset?: number;
  /** Counts the reads made (requests, for an HTTP source). */
  stats?: { reads: number };
}

/** Walk all headers of a tar archive on `src`, reading only headers and extension payloads. */
export async function readTarIndex(src: ByteSource, opts: WalkOptions = {}): Promise<TarIndex> {
  const total = await src.size();
  const ra = new ReadAhead(src, total, opts.window, opts.stats);
  if (opts.head) ra.seed(0, opts.head);
  const entries: TarEntry[] = [];
  let globals = new Map<string, string>();
  let pending = new Map<string, string>();
  let pendingStart = -1;
  let offset = opts.startOffset ?? 0;

  for (;;) {
    if (offset + BLOCK > total) {
      throw new CosiError('COSI_ERR_TRUNCATED', `archive ${src.name} ends at ${total} bytes without a tar end-of-archive marker`);
    }
    const block = await ra.read(offset, BLOCK);
    const h = decodeHeader(block, offset);
    if (h === null) {
      const second = offset + 2 * BLOCK <= total ? await ra.read(offset + BLOCK, BLOCK) : undefined;
      const complete = second !== undefined && second.length === BLOCK && isZeroBlock(second);
      return {
        entries,
        endOffset: offset,
        endMarkerComplete: complete,
        trailingBytes: Math.max(0, total - offset - (complete ? 2 * BLOCK : BLOCK)),
      };
    }
    const dataOffset = offset + BLOCK;
    if (h.typeflag === 'x' || h.typeflag === 'g' || h.typeflag === 'L' || h.typeflag === 'K') {
      if (h.size > MAX_EXTENSION_BYTES) {
        throw new CosiError('COSI_ERR_TAR', `tar extension header at ${offset} is ${h.size} bytes (limit ${MAX_EXTENSION_BYTES})`);
      }
      if (dataOffset + h.size > total) throw new CosiError('COSI_ERR_TRUNCATED', `archive ends inside the tar extension header at ${offset}`);
      const data = await ra.read(dataOffset, h.size);
      if (pendingStart < 0 && h.typeflag !== 'g') pendingStart = offset;
      if (h.typeflag === 'g') {
        globals = new Map([...globals, ...parsePax(data, offset)]);
      } else if (h.typeflag === 'x') {
        for (const [k, v] of parsePax(data, offset)) pending.set(k, v);
      } else {
        // GNU long name/link: the payload is the NUL-terminated string.
        const s = Buffer.from(data).toString('utf8').replace(/\0.*$/s, '');
        pending.set(h.typeflag === 'L' ? 'path' : 'linkpath', s);
      }
      offset = dataOffset + padded(h.size);
      continue;
    }
    const ext = new Map([...globals, ...pending]);
    let size = h.size;
    const paxSize = ext.get('size');
    if (paxSize !== undefined) {
      if (!/^\d+$/.test(paxSize) || !Number.isSafeInteger(Number(paxSize))) {
        throw new CosiError('COSI_ERR_TAR', `PAX size at ${offset} is not a valid number (${paxSize})`);
      }
      size = Number(paxSize);
    }
    const paxMtime = ext.get('mtime');
    const entry: TarEntry = {
      name: ext.get('path') ?? h.name,
      type: entryType(h.typeflag),
      typeflag: h.typeflag,
      headerOffset: pendingStart >= 0 ? pendingStart : offset,
      ustarOffset: offset,
      dataOffset,
      size: hasData(h.typeflag) ? size : 0,
      mode: h.mode,
      mtime: paxMtime !== undefined && Number.isFinite(Number(paxMtime)) ? Math.floor(Number(paxMtime)) : h.mtime,
    };
    if (entry.dataOffset + entry.size > total) {
      throw new CosiError('COSI_ERR_TRUNCATED', `archive ${src.name} is truncated: ${entry.name} needs bytes up to ${entry.dataOffset + entry.size}, file has ${total}`);
    }
    entries.push(entry);
    if (entries.length > MAX_ENTRIES) throw new CosiError('COSI_ERR_TAR', `archive has more than ${MAX_ENTRIES} entries`);
    pending = new Map();
    pendingStart = -1;
    offset = dataOffset + padded(entry.size);
    if (opts.stopAfter?.(entry, entries.length - 1)) {
      return { entries, endOffset: -1, endMarkerComplete: false, trailingBytes: 0 };
    }
  }
}

// Hard links, symlinks, directories carry no data even if a writer put a size in the header.
function hasData(tf: string): boolean {
  return tf !== '1' && tf !== '2' && tf !== '5' && tf !== '3' && tf !== '4' && tf !== '6';
}
