/**
 * The URLs one HttpSource reads from (the primary and its mirrors), what each
 * has shown so far, and the cursor that says which one transfers use now.
 */
import { CosiError } from '../../errors.js';
import type { Validator } from './validator.js';

export interface Endpoint {
  url: URL;
  name: string;
  /** Basic credentials from the URL's userinfo, for its own origin only. */
  auth: string | undefined;
  /** Where a permanent redirect led, so later requests skip the hop. */
  location: URL | undefined;
  validator: Validator | undefined;
  /** Answered a range with 206 at least once. */
  ranged: boolean;
  /** Some response (any status) came back from it: a refused connection later is a blip, not a wrong address. */
  answered: boolean;
  /** A failure that retrying this URL will not fix (4xx, TLS, no ranges), while others remain. */
  dead: CosiError | undefined;
}

/** The URL for messages and logs: no credentials, and a query (often a signature) elided. */
export function displayUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}${url.search ? '?...' : ''}`;
}

export function parseEndpoint(raw: string): Endpoint {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new CosiError('COSI_ERR_USAGE', `not a valid URL: ${raw}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new CosiError('COSI_ERR_USAGE', `HttpSource needs an http(s) URL, got ${url.protocol}//...`);
  }
  let auth: string | undefined;
  if (url.username || url.password) {
    auth = 'Basic ' + Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64');
    url.username = '';
    url.password = '';
  }
  url.hash = '';
  return { url, name: displayUrl(url), auth, location: undefined, validator: undefined, ranged: false, answered: false, dead: undefined };
}

/** The endpoints of one source, in order, with a cursor shared by all its transfers. */
export class Endpoints {
  private readonly list: Endpoint[];
  private current = 0;

  constructor(urls: string[]) {
    this.list = urls.map(parseEndpoint);
  }

  /** The URL the source was opened with. */
  get primary(): Endpoint {
    return this.list[0]!;
  }

  get count(): number {
    return this.list.length;
  }

  /** Some endpoint answered a range with 206. */
  anyRanged(): boolean {
    return this.list.some((e) => e.ranged);
  }

  /** The endpoint to use now; when all are dead a fresh transfer tries them all again. */
  pick(): Endpoint {
    if (this.list.every((e) => e.dead)) {
      for (const e of this.list) e.dead = undefined;
      this.current = 0;
    }
    while (this.list[this.current]!.dead) this.current = (this.current + 1) % this.list.length;
    return this.list[this.current]!;
  }

  /**
   * After a failure on `ep`: move to the next live endpoint if there is one.
   * Returns it, or undefined when `ep` is the only one left.
   */
  advance(ep: Endpoint): Endpoint | undefined {
    const n = this.list.length;
    const at = this.list.indexOf(ep);
    for (let i = 1; i < n; i++) {
      const next = this.list[(at + i) % n]!;
      if (!next.dead) {
        // Another transfer may have moved on already; only move the shared cursor from where we were.
        if (this.current === at) this.current = (at + i) % n;
        return next;
      }
    }
    return undefined;
  }
}
