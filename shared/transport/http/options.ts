/** What an HttpSource can be told (options, defaults) and what it reports (events). */
import type { Dispatcher } from 'undici';

export type HttpSourceEvent =
  | { type: 'request'; url: string; range?: string }
  /**
   * A failed request about to be tried again: `attempt` of `retries`, after
   * `delayMs`; `reason` is the failure in a few words ('connection refused'),
   * `error` the whole line. Nothing is printed by the library: a CLI shows these.
   */
  | { type: 'retry'; url: string; offset: number; attempt: number; retries: number; delayMs: number; reason: string; error: string }
  | { type: 'mirror'; from: string; to: string; offset: number };

export interface HttpSourceOptions {
  /** The same file at other URLs: on failure of one, continue from the same offset on the next. */
  mirrors?: string[];
  /** Default: a module-level pooled Agent shared by every source. */
  dispatcher?: Dispatcher;
  /** Sent with every request (e.g. authorization); dropped on redirects to another origin. */
  headers?: Record<string, string>;
  /** Longest wait for response headers or for the next body bytes, default 30 s. */
  idleTimeoutMs?: number;
  /** Default 10 s; only used for the shared Agent (a caller's dispatcher has its own). */
  connectTimeoutMs?: number;
  /** Failures tolerated per transfer before giving up, default 6. */
  retries?: number;
  /** Base of the exponential backoff (with jitter), default 200 ms. */
  backoffMs?: number;
  /** Default 5. */
  maxRedirects?: number;
  /**
   * A transfer slower than this (bytes per second of waiting on the network,
   * consumer back-pressure excluded) over `lowSpeedWindowMs` is treated as a
   * timeout and resumed: a trickling server defeats an idle timeout alone.
   * Default 1024; 0 disables.
   */
  minBytesPerSecond?: number;
  /** Default 60 s. */
  lowSpeedWindowMs?: number;
  onEvent?: (e: HttpSourceEvent) => void;
  /** The name in messages instead of the URL (an object-store URL for the presigned URL it reads). */
  label?: string;
  /**
   * The version this source must read, known before its first request (an
   * object's ETag and size from a listing, or from an earlier source of the
   * same object): every response is held to it from the start.
   */
  expect?: { etag?: string; lastModified?: string; size: number };
}

export const DEFAULTS = {
  idleTimeoutMs: 30_000,
  connectTimeoutMs: 10_000,
  retries: 6,
  backoffMs: 200,
  maxRedirects: 5,
  minBytesPerSecond: 1024,
  lowSpeedWindowMs: 60_000,
};

export type ResolvedOptions = typeof DEFAULTS & Pick<HttpSourceOptions, 'onEvent'>;

export function resolveOptions(opts: HttpSourceOptions): ResolvedOptions {
  return {
    idleTimeoutMs: opts.idleTimeoutMs ?? DEFAULTS.idleTimeoutMs,
    connectTimeoutMs: opts.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
    retries: Math.max(0, opts.retries ?? DEFAULTS.retries),
    backoffMs: opts.backoffMs ?? DEFAULTS.backoffMs,
    maxRedirects: opts.maxRedirects ?? DEFAULTS.maxRedirects,
    minBytesPerSecond: opts.minBytesPerSecond ?? DEFAULTS.minBytesPerSecond,
    lowSpeedWindowMs: opts.lowSpeedWindowMs ?? DEFAULTS.lowSpeedWindowMs,
    onEvent: opts.onEvent,
  };
}
