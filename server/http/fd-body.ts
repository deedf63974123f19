/**
 * The hot path for byte ranges of a local archive (single ranges and every
 * part of a multipart/byteranges answer): reads on the open descriptor
 * straight into buffers handed to the socket, without a stream per request.
 * A range that fits one chunk is one read and one res.end; larger ones
 * alternate two buffers, so the next read runs in the thread pool while the
 * socket drains the previous chunk.
 *
 * What a transfer pins is those two chunks, and their size follows the
 * client: they start at FD_CHUNK_MIN and double (up to FD_CHUNK) only while
 * the socket took each chunk before the next one was read and the connection
 * has taken GROW_AFTER times the new size already; a chunk that has to wait
 * for the socket is read at FD_CHUNK_MIN. So a reader at 1 KB/s pins
 * 2 x 64 KiB (1 MiB chunks had pinned 2 MiB per slow reader), while a fast
 * connection reaches 1 MiB chunks after its first 64 MiB and keeps that pace
 * for its next requests (a CDN's keep-alive connection asking for slice after
 * slice). The growth above FD_CHUNK_MIN comes out of GROWTH_BUDGET, shared by
 * every transfer of the process, so fast readers that stall hold at most that.
 *
 * The first chunk is read before the status line goes out: a read error
 * there is still a clean JSON error, not a cut connection.
 */
import { read, readSync } from 'node:fs';
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { CosiError } from '../../shared/errors.js';

/** The largest chunk: large enough that syscalls and promise hops vanish per GiB. */
export const FD_CHUNK = 1 << 20;

/** Where every transfer starts, and what a client slower than the disk keeps: two of these. */
export const FD_CHUNK_MIN = 64 * 1024;

/**
 * A chunk doubles only once the socket has taken this many times the new size. Kernel socket
 * buffers take the first few MiB of any transfer at once (4 MiB send buffer here), slow reader
 * or not; 64x keeps what a reader that then stalls has pinned at 2 x 64 KiB.
 */
const GROW_AFTER = 64;

/** Bytes above FD_CHUNK_MIN per buffer, for all transfers together (32 transfers at full size). */
export const GROWTH_BUDGET = 64 << 20;
let growthLeft = GROWTH_BUDGET;

/** What each connection's socket has taken over its transfers so far: its proven pace. */
const takenBy = new WeakMap<object, number>();

/** Bytes of chunk buffers transfers hold right now (for the cosi_transfer_buffer_bytes gauge). */
let buffered = 0;
export function transferBufferBytes(): number {
  return buffered;
}

/**
 * Ranges up to this size are read synchronously, as nginx reads: from the
 * page cache that is a memcpy, far cheaper than a thread-pool round trip,
 * which dominated small-range serving. A cache miss stalls the loop for one
 * small read; larger ranges always go through the pool.
 */
export const SYNC_READ_MAX = 64 * 1024;

/** Exactly `length` bytes at `position` into `buf`, synchronously (small ranges only). */
export function readExactSync(fd: number, buf: Buffer, length: number, position: number): void {
  let got = 0;
  while (got < length) {
    const n = readSync(fd, buf, got, length - got, position + got);
    if (n === 0) throw new CosiError('COSI_ERR_IO', `short read: the file ended ${length - got} bytes before the range did`);
    got += n;
  }
}

function readOnce(fd: number, buf: Buffer, at: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => read(fd, buf, at, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

/** Exactly `length` bytes at `position` into `buf`; a file shorter than that is an error. */
export async function readExact(fd: number, buf: Buffer, length: number, position: number): Promise<void> {
  let got = 0;
  while (got < length) {
    const n = await readOnce(fd, buf, got, length - got, position + got);
    if (n === 0) throw new CosiError('COSI_ERR_IO', `short read: the file ended ${length - got} bytes before the range did`);
    got += n;
  }
}

function clientGone(): Error {
  return Object.assign(new Error('client closed the connection'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
}

/** The first chunk of a range, read before any header goes out. */
async function readFirst(fd: number, position: number, length: number): Promise<Buffer> {
  const first = Buffer.allocUnsafe(Math.min(length, FD_CHUNK_MIN));
  if (length <= SYNC_READ_MAX) readExactSync(fd, first, first.length, position);
  else await readExact(fd, first, first.length, position);
  return first;
}

/** One transfer's chunks on their way into a response: two slots, each written before it is reused. */
class FdPump {
  private readonly bufs: Array<Buffer | undefined> = [undefined, undefined];
  private readonly written: Array<Promise<void>> = [Promise.resolve(), Promise.resolve()];
  /** The slot's last write has been taken by the socket. */
  private readonly drained = [true, true];
  private slot = 0;
  /** Bytes the connection has taken so far, in this and earlier transfers. */
  private taken: number;
  private readonly socket: object | null;
  /** GROWTH_BUDGET bytes this transfer's buffers hold. */
  private held = 0;
  private readonly gone: Promise<never>;
  private readonly onClose: () => void;

  constructor(
    private readonly res: ServerResponse,
    private readonly onBytes?: (n: number) => void,
  ) {
    this.socket = res.socket;
    this.taken = (this.socket && takenBy.get(this.socket)) || 0;
    let fail!: (err: Error) => void;
    this.gone = new Promise<never>((_, reject) => (fail = reject));
    this.gone.catch(() => {}); // observed through the races in put()
    this.onClose = () => fail(clientGone());
    res.once('close', this.onClose);
  }

  /** Bytes [position, position+length) of `fd`; `first`, when given, is its start, already read. */
  async send(fd: number, position: number, length: number, first?: Buffer): Promise<void> {
    let pos = position;
    let left = length;
    if (first) {
      // Kept as the slot's buffer (it is one of the two chunks in flight), when the slot has none.
      if (this.bufs[this.slot] === undefined) {
        this.bufs[this.slot] = first;
        buffered += first.length;
      }
      this.put(first);
      pos += first.length;
      left -= first.length;
    }
    while (left > 0) {
      const slot = this.slot;
      // This slot's previous chunk must be in the kernel before its buffer is reused; meanwhile the
      // other slot's write is still draining, which is the overlap.
      const keptUp = this.drained[slot]!;
      await this.written[slot];
      if (this.res.destroyed) throw clientGone();
      const buf = this.buffer(slot, this.nextSize(keptUp));
      const n = Math.min(left, buf.length);
      // A small range (a multipart part) is read as a small single range is: synchronously.
      if (length <= SYNC_READ_MAX) readExactSync(fd, buf, n, pos);
      else await readExact(fd, buf, n, pos);
      this.put(n === buf.length ? buf : buf.subarray(0, n));
      pos += n;
      left -= n;
    }
  }

  /** A few bytes between ranges (a multipart boundary): written as they are, not counted as body. */
  note(bytes: Buffer): void {
    this.res.write(bytes);
  }

  /** Every chunk taken by the socket, then the response ended. */
  async end(last?: Buffer): Promise<void> {
    await Promise.all(this.written);
    this.res.end(last);
  }

  /** Gives the budget back; the buffers go with the pump. */
  close(): void {
    this.res.off('close', this.onClose);
    if (this.socket) takenBy.set(this.socket, this.taken);
    growthLeft += this.held;
    this.held = 0;
    for (const b of this.bufs) if (b) buffered -= b.length;
    this.bufs.fill(undefined);
  }

  private put(chunk: Buffer): void {
    const slot = this.slot;
    this.slot ^= 1;
    this.onBytes?.(chunk.length);
    this.drained[slot] = false;
    const wrote = new Promise<void>((resolve, reject) =>
      this.res.write(chunk, (err) => {
        if (err) return reject(err);
        this.drained[slot] = true;
        this.taken += chunk.length;
        resolve();
      }),
    );
    const p = Promise.race([wrote, this.gone]);
    p.catch(() => {}); // awaited later, maybe after it fails: not an unhandled rejection meanwhile
    this.written[slot] = p;
  }

  /** Double while the client keeps up and has taken GROW_AFTER times the size already; the minimum when it did not keep up. */
  private nextSize(keptUp: boolean): number {
    let size = FD_CHUNK_MIN;
    if (keptUp) while (size < FD_CHUNK && size * 2 * GROW_AFTER <= this.taken) size *= 2;
    return size;
  }

  /** The slot's buffer at `want` bytes, or less when the shared budget is short. */
  private buffer(slot: number, want: number): Buffer {
    const old = this.bufs[slot];
    const oldExtra = old ? Math.max(0, old.length - FD_CHUNK_MIN) : 0;
    let size = want;
    while (size > FD_CHUNK_MIN && size - FD_CHUNK_MIN > growthLeft + oldExtra) size /= 2;
    if (old?.length === size) return old;
    // The old buffer's write is done (awaited before this): it goes, and its share of the budget.
    growthLeft += oldExtra - (size - FD_CHUNK_MIN);
    this.held += size - FD_CHUNK_MIN - oldExtra;
    const buf = Buffer.allocUnsafe(size);
    buffered += size - (old?.length ?? 0);
    this.bufs[slot] = buf;
    return buf;
  }
}

/**
 * Write the status, headers and bytes [position, position+length) of `fd`.
 * Resolves once the last byte is handed to the socket; rejects if the client
 * goes away or a read fails (headers may then be out: the caller cuts the connection).
 */
export async function sendFdRange(
  res: ServerResponse,
  status: number,
  headers: OutgoingHttpHeaders,
  fd: number,
  position: number,
  length: number,
  onBytes?: (n: number) => void,
): Promise<void> {
  const first = await readFirst(fd, position, length);
  res.writeHead(status, headers);
  if (first.length === length) {
    onBytes?.(length);
    res.end(first);
    return;
  }
  const pump = new FdPump(res, onBytes);
  try {
    await pump.send(fd, position, length, first);
    await pump.end();
  } finally {
    pump.close();
  }
}

/** One part of a multipart/byteranges body: its boundary and headers, then bytes of the file. */
export interface FdPart {
  head: Buffer;
  position: number;
  length: number;
}

/** sendFdRange for a multipart/byteranges answer: each part's head, its bytes, then `tail`. */
export async function sendFdParts(
  res: ServerResponse,
  status: number,
  headers: OutgoingHttpHeaders,
  fd: number,
  parts: FdPart[],
  tail: Buffer,
  onBytes?: (n: number) => void,
): Promise<void> {
  const first = await readFirst(fd, parts[0]!.position, parts[0]!.length);
  res.writeHead(status, headers);
  const pump = new FdPump(res, onBytes);
  try {
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      pump.note(p.head);
      await pump.send(fd, p.position, p.length, i === 0 ? first : undefined);
    }
    await pump.end(tail);
  } finally {
    pump.close();
  }
}
