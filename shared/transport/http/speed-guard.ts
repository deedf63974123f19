/** The low-speed limit: a trickling server defeats an idle timeout alone. */
import { fail } from './failures.js';

/**
 * Bytes per second while waiting on the network. Time the consumer spends
 * holding us back (between yields) is not counted, so a slow disk does not
 * look like a slow server.
 */
export class SpeedGuard {
  private waited = 0;
  private bytes = 0;
  private resumed = performance.now();
  constructor(private readonly minBps: number, private readonly windowMs: number, private readonly what: string) {}

  /** Call when the consumer asks for more. */
  resume(): void {
    this.resumed = performance.now();
  }

  /** Call when `n` bytes arrived; throws a retryable timeout when the window was too slow. */
  arrived(n: number): void {
    if (this.minBps <= 0) return;
    this.waited += performance.now() - this.resumed;
    this.bytes += n;
    if (this.waited < this.windowMs) return;
    const bps = (this.bytes * 1000) / this.waited;
    this.waited = 0;
    this.bytes = 0;
    if (bps < this.minBps) {
      throw fail('COSI_ERR_TIMEOUT', `${this.what}: transfer too slow (${Math.round(bps)} B/s, minimum ${this.minBps} B/s)`, 'again');
    }
  }
}
