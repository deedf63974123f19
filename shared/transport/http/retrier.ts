/** The failure budget of one transfer, with exponential backoff and mirror changes. */
import { setTimeout as sleep } from 'node:timers/promises';
import { CosiError } from '../../errors.js';
import type { Endpoint, Endpoints } from './endpoints.js';
import { classify } from './failures.js';
import type { HttpSourceEvent, ResolvedOptions } from './options.js';

const MAX_BACKOFF_MS = 30_000;
/** A transfer that moved this much since its last failure starts counting failures afresh. */
const PROGRESS_RESETS_RETRIES = 1 << 20;

/** What every transfer of one source shares. */
export interface RetryContext {
  /** The source's name, for messages. */
  readonly name: string;
  readonly endpoints: Endpoints;
  readonly options: Readonly<Pick<ResolvedOptions, 'idleTimeoutMs' | 'retries' | 'backoffMs'>>;
  readonly emit: (e: HttpSourceEvent) => void;
}

/**
 * The failure budget of one transfer: classifies, picks the next mirror,
 * backs off, and throws once the budget is spent or the error is final.
 */
export class Retrier {
  private failures = 0;
  private sinceFailure = 0;

  constructor(private readonly ctx: RetryContext, private readonly signal: AbortSignal) {}

  progressed(n: number): void {
    this.sinceFailure += n;
  }

  async failed(err: unknown, offset: number, ep: Endpoint): Promise<void> {
    const { name, endpoints, options: o, emit } = this.ctx;
    if (this.signal.aborted) throw new CosiError('COSI_ERR_NETWORK', `${name}: transfer aborted`, { cause: err });
    const { error, retry } = classify(err, `GET ${ep.name}`, o.idleTimeoutMs);
    if (retry === 'never') throw error;
    if (this.sinceFailure >= PROGRESS_RESETS_RETRIES) this.failures = 0;
    this.sinceFailure = 0;
    this.failures++;
    // Refused before anything ever answered: a wrong port or a server that is not running, not a blip worth 17 s of backoff.
    const neverAnswered = !ep.answered && error.details?.code === 'ECONNREFUSED';
    if (retry === 'mirror' || neverAnswered) ep.dead = error;
    const next = endpoints.advance(ep);
    if (!next && (retry === 'mirror' || neverAnswered)) {
      ep.dead = undefined;
      if (neverAnswered) throw new CosiError(error.code, `${error.message}: nothing answers there; is the server running, and is the host and port right?`, { cause: error.cause ?? error, details: error.details });
      throw error;
    }
    if (this.failures > o.retries) {
      throw new CosiError(error.code, `${error.message} (gave up after ${this.failures} attempts)`, { cause: error.cause ?? error, details: error.details });
    }
    const to = next ?? ep;
    if (next) emit({ type: 'mirror', from: ep.name, to: next.name, offset });
    const exp = o.backoffMs * 2 ** (this.failures - 1);
    const jittered = exp * (0.5 + Math.random());
    const hinted = typeof error.details?.retryAfterMs === 'number' ? error.details.retryAfterMs : 0;
    const delayMs = Math.round(Math.min(MAX_BACKOFF_MS, Math.max(jittered, hinted)));
    const reason = error.message.replace(/^(GET|HEAD) \S+: /, '');
    emit({ type: 'retry', url: to.name, offset, attempt: this.failures, retries: o.retries, delayMs, reason, error: error.message });
    try {
      await sleep(delayMs, undefined, { signal: this.signal });
    } catch {
      throw new CosiError('COSI_ERR_NETWORK', `${name}: transfer aborted`, { cause: error });
    }
  }
}
