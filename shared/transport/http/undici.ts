/**
 * The two parts of undici we use, required from their own modules: undici's
 * index also loads fetch, WebSocket, the caches and the mocks, 110 modules
 * and 95 ms of every cosi-fetch start here, against 25 modules and 38 ms.
 * These paths are undici's internals, not its API: if a release moves them,
 * the index is used instead (slower to load, same behaviour).
 */
import { createRequire } from 'node:module';
import type * as Undici from 'undici';
import type { Dispatcher } from 'undici';

const require = createRequire(import.meta.url);

type RequestFn = (this: Dispatcher, opts: Dispatcher.RequestOptions) => Promise<Dispatcher.ResponseData>;

function load(): { Agent: typeof Undici.Agent; request: RequestFn } {
  try {
    return { Agent: require('undici/lib/dispatcher/agent.js'), request: require('undici/lib/api/api-request.js') };
  } catch {
    const u = require('undici') as typeof Undici;
    return { Agent: u.Agent, request: u.Dispatcher.prototype.request as RequestFn };
  }
}

const parts = load();

export const Agent = parts.Agent;
export type Agent = Undici.Agent;

/** dispatcher.request(), also for our Agent, whose prototype lacks it unless undici's index was loaded. */
export function request(d: Dispatcher, opts: Dispatcher.RequestOptions): Promise<Dispatcher.ResponseData> {
  return typeof d.request === 'function' ? d.request(opts) : parts.request.call(d, opts);
}
