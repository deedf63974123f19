/**
 * A consumer that is done with a chunk once put() settles, so the decoder may
 * reuse the buffer (the worker decoder lends slots of its ring). A plain
 * object with put() is one; a Writable is one only when it says so with
 * CHUNK_SINK, so a put() method alone never gets it lent buffers.
 */
import { Writable } from 'node:stream';
import type { WriteReport, WriteTarget } from '../shared/transport/positional-write.js';

export interface ChunkSink {
  put(chunk: Buffer): Promise<void> | void;
  /**
   * A file the decoder may write itself instead of calling put() (the worker
   * then writes each piece while it is hot in its cache, and this thread only
   * hears what was written, through wrote()). Undefined: put() it is.
   */
  writeTarget?(): WriteTarget | undefined;
  wrote?(r: WriteReport): void;
}

export const CHUNK_SINK: unique symbol = Symbol.for('cosi-stream.chunk-sink');

export function isChunkSink(x: Writable | ChunkSink): x is ChunkSink {
  if (typeof (x as Partial<ChunkSink>).put !== 'function') return false;
  return !(x instanceof Writable) || (x as { [CHUNK_SINK]?: boolean })[CHUNK_SINK] === true;
}

/**
 * The stream engine's view of any sink: a Writable as it is, a plain
 * ChunkSink behind one whose write settles with put(). The stream engine's
 * buffers are the consumer's to keep, so lending rules do not arise.
 */
export function asWritable(sink: Writable | ChunkSink): Writable {
  if (sink instanceof Writable) return sink;
  return new Writable({
    highWaterMark: 1 << 20,
    write: (chunk: Buffer, _enc, cb) => {
      Promise.resolve()
        .then(() => sink.put(chunk))
        .then(() => cb(), cb);
    },
  });
}
