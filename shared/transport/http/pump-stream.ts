/** The Readable that HttpSource.stream() and openFull() return, pulled from an async generator. */
import { Readable } from 'node:stream';
import { CosiError } from '../../errors.js';
import { markExclusive } from '../source.js';

const STREAM_HIGH_WATER = 1 << 20;

/**
 * A Readable fed by an async generator with back-pressure: the generator is
 * only resumed when the consumer wants more, so undici's body (and the socket
 * under it) pauses with the consumer. Destroying the stream aborts the request
 * at once, even in the middle of a stall.
 */
export class PumpStream extends Readable {
  private started = false;
  private wake: (() => void) | undefined;
  private readonly onParentAbort = (): void => {
    this.destroy(new CosiError('COSI_ERR_NETWORK', `${this.label}: transfer aborted (source closed)`));
  };

  constructor(
    private readonly source: () => AsyncGenerator<Buffer>,
    private readonly ac: AbortController,
    private readonly parent: AbortSignal,
    private readonly label: string,
    /** Mark chunks as this stream's alone (see markExclusive): read() keeps some, stream() never. */
    private readonly exclusive = false,
  ) {
    super({ highWaterMark: STREAM_HIGH_WATER });
    if (parent.aborted) queueMicrotask(this.onParentAbort);
    else parent.addEventListener('abort', this.onParentAbort, { once: true });
  }

  override _read(): void {
    if (!this.started) {
      this.started = true;
      void this.run();
    } else {
      const w = this.wake;
      this.wake = undefined;
      w?.();
    }
  }

  private async run(): Promise<void> {
    try {
      for await (const chunk of this.source()) {
        if (this.destroyed) return;
        if (this.exclusive) markExclusive(chunk);
        if (!this.push(chunk)) await new Promise<void>((resolve) => (this.wake = resolve));
        if (this.destroyed) return;
      }
      if (!this.destroyed) this.push(null);
    } catch (err) {
      this.destroy(err as Error);
    }
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.parent.removeEventListener('abort', this.onParentAbort);
    this.ac.abort();
    const w = this.wake;
    this.wake = undefined;
    w?.();
    cb(err);
  }
}
