/**
 * One HTTP request for an endpoint: the caller's headers, the endpoint's
 * credentials (kept to its own origin) and redirects, with permanent ones
 * remembered so later requests skip the hop.
 */
import type { Dispatcher } from 'undici';
import { request } from './undici.js';
import { displayUrl, type Endpoint } from './endpoints.js';
import { classify, fail, statusError } from './failures.js';
import type { HttpSourceEvent, ResolvedOptions } from './options.js';
import { header } from './response.js';

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const PERMANENT_REDIRECTS = new Set([301, 308]);
/** Headers that must not follow a redirect to another origin. */
const CREDENTIAL_HEADERS = ['authorization', 'cookie', 'proxy-authorization'];

export class Requester {
  private readonly headers: Record<string, string> = {};

  constructor(
    private readonly dispatcher: Dispatcher,
    headers: Record<string, string> | undefined,
    private readonly o: Readonly<Pick<ResolvedOptions, 'idleTimeoutMs' | 'maxRedirects'>>,
    /** Counts every request sent, redirect hops included. */
    private readonly stats: { requests: number },
    private readonly emit: (e: HttpSourceEvent) => void,
  ) {
    for (const [k, v] of Object.entries(headers ?? {})) this.headers[k.toLowerCase()] = v;
  }

  /** Send one request, following redirects; returns the final response and its display URL. */
  async send(ep: Endpoint, method: 'GET' | 'HEAD', range: string | undefined, ifRange: string | undefined, signal: AbortSignal): Promise<{ res: Dispatcher.ResponseData; url: string }> {
    let url = ep.location ?? ep.url;
    const seen = new Set<string>([url.href]);
    let permanent = true;
    for (let hop = 0; ; hop++) {
      const headers: Record<string, string> = { ...this.headers, 'accept-encoding': 'identity' };
      if (url.origin !== ep.url.origin) for (const h of CREDENTIAL_HEADERS) delete headers[h];
      else if (ep.auth && !headers.authorization) headers.authorization = ep.auth;
      if (range) headers.range = range;
      if (ifRange) headers['if-range'] = ifRange;
      // ep.name: the URL as displayed, or the label it was given (an object-store URL for a presigned one).
      const name = url === ep.url ? ep.name : displayUrl(url);
      this.stats.requests++;
      this.emit(range ? { type: 'request', url: name, range } : { type: 'request', url: name });
      let res: Dispatcher.ResponseData;
      try {
        res = await request(this.dispatcher, {
          origin: url.origin,
          path: url.pathname + url.search,
          method,
          headers,
          signal,
          headersTimeout: this.o.idleTimeoutMs,
          bodyTimeout: this.o.idleTimeoutMs,
        });
      } catch (err) {
        throw classify(err, `${method} ${name}`, this.o.idleTimeoutMs).error;
      }
      ep.answered = true;
      if (!REDIRECTS.has(res.statusCode)) return { res, url: name };
      await res.body.dump().catch(() => {});
      const location = header(res.headers, 'location');
      if (!location) throw statusError(`${method} ${name}`, res);
      let next: URL;
      try {
        next = new URL(location, url);
      } catch {
        throw fail('COSI_ERR_REDIRECT', `${method} ${name}: redirect to an invalid URL (${location})`, 'mirror');
      }
      next.hash = '';
      if (next.protocol !== 'http:' && next.protocol !== 'https:') {
        throw fail('COSI_ERR_REDIRECT', `${method} ${name}: redirect to unsupported ${next.protocol} URL`, 'mirror');
      }
      if (seen.has(next.href)) {
        throw fail('COSI_ERR_REDIRECT', `${method} ${ep.name}: redirect loop (${name} -> ${displayUrl(next)})`, 'mirror');
      }
      if (hop >= this.o.maxRedirects) {
        throw fail('COSI_ERR_REDIRECT', `${method} ${ep.name}: more than ${this.o.maxRedirects} redirects`, 'mirror');
      }
      permanent &&= PERMANENT_REDIRECTS.has(res.statusCode);
      if (permanent) ep.location = next;
      seen.add(next.href);
      url = next;
    }
  }
}
