/**
 * The hot path for byte ranges of a local archive: reads on the open
 * descriptor straight into buffers handed to the socket, without a stream
 * per request. A range that fits one chunk is one read and one res.end;
 * larger ones alternate two buffers, so the next read runs in the thread
 * pool while the socket drains the previous chunk (at most two chunks in
 * memory per transfer, whatever the client's pace).
 *
 * The first chunk is read before the status line goes out: a read error
 * there is still a clean JSON error, not a cut connection.
 */
import { read, readSync } from 'node:fs';
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { CosiError } from '../../shared/errors.js';

/** Large enough that syscalls and promise hops vanish per GiB, small enough for many transfers. */
export const FD_CHUNK = 1 << 20;

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
  const first = Buffer.allocUnsafe(Math.min(length, FD_CHUNK));
  if (length <= SYNC_READ_MAX) readExactSync(fd, first, length, position);
  else await readExact(fd, first, first.length, position);
  res.writeHead(status, headers);
  onBytes?.(first.length);
  if (first.length === length) {
    res.end(first);
    return;
  }

  let onClose: (() => void) | undefined;
  const gone = new Promise<never>((_, reject) => {
    onClose = () => reject(clientGone());
    res.once('close', onClose);
  });
  gone.catch(() => {}); // observed through the races below
  const write = (chunk: Buffer): Promise<void> => {
    const p = Promise.race([new Promise<void>((resolve, reject) => void res.write(chunk, (err) => (err ? reject(err) : resolve()))), gone]);
    // Awaited later, maybe after it fails: not an unhandled rejection meanwhile.
    p.catch(() => {});
    return p;
  };

  try {
    const bufs = [first, Buffer.allocUnsafe(FD_CHUNK)];
    const written: Array<Promise<void>> = [write(first), Promise.resolve()];
    let pos = position + first.length;
    let left = length - first.length;
    for (let i = 1; left > 0; i++) {
      const slot = i & 1;
      const n = Math.min(left, FD_CHUNK);
      // This buffer's previous chunk must be in the kernel before it is reused; meanwhile the
      // other buffer's write is still draining, which is the overlap.
      await written[slot];
      if (res.destroyed) throw clientGone();
      const buf = bufs[slot]!;
      await readExact(fd, buf, n, pos);
      onBytes?.(n);
      written[slot] = write(n === buf.length ? buf : buf.subarray(0, n));
      pos += n;
      left -= n;
    }
    await Promise.all(written);
    res.end();
  } finally {
    res.off('close', onClose!);
  }
}
