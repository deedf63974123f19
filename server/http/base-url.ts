/**
 * This server's own address as its clients reach it, for answers that carry
 * absolute URLs (boot.ipxe, plan.txt, the catalog page's commands): the
 * --public-url when set, else the request's Host, echoed only when it is a
 * plain host and port.
 */
import type { Context } from 'hono';
import { HttpError } from '../errors.js';
import type { AppDeps, AppEnv } from './env.js';

/** A Host header we are willing to echo into scripts: a name or address and a port, nothing else. */
const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/** This server's base URL as clients reach it, without a trailing slash. */
export function baseUrl(c: Context<AppEnv>, deps: AppDeps): string {
  if (deps.publicUrl) return deps.publicUrl;
  const host = c.req.header('host');
  if (!host || !HOST.test(host)) {
    throw new HttpError(400, 'BAD_REQUEST', 'cannot build absolute URLs from this Host header; start the server with --public-url');
  }
  return `${deps.scheme ?? 'http'}://${host}`;
}
