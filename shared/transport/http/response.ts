/** Small helpers for reading undici responses: one header's value, abandoning a body. */
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';

export function header(headers: Dispatcher.ResponseData['headers'], name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * Abandon a response body. undici reports destroying an unfinished body as an
 * 'error' (RequestAbortedError); with nobody listening that would be an
 * uncaught exception, so listen first.
 */
export function discard(body: Readable): void {
  body.on('error', () => {});
  body.destroy();
}
