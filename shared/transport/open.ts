/** Open a byte source by what the user typed: a path, a file:// URL or an http(s) URL. */
import { fileURLToPath } from 'node:url';
import { CosiError } from '../errors.js';
import { FileSource } from './file-source.js';
import { HttpSource } from './http/source.js';
import type { HttpSourceOptions } from './http/options.js';
import { StoreSource } from './store/source.js';
import { isStoreUrl } from './store/url.js';

/** A local path or file:// URL as a FileSource, an object-store URL as a StoreSource, an http(s) URL as an HttpSource. */
export function openSource(urlOrPath: string, opts?: HttpSourceOptions): FileSource | HttpSource | StoreSource {
  if (isStoreUrl(urlOrPath)) return new StoreSource(urlOrPath, opts);
  if (/^https?:\/\//i.test(urlOrPath)) return new HttpSource(urlOrPath, opts);
  if (/^file:/i.test(urlOrPath)) {
    try {
      return new FileSource(fileURLToPath(urlOrPath));
    } catch {
      throw new CosiError('COSI_ERR_USAGE', `not a usable file URL: ${urlOrPath}`);
    }
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(urlOrPath)) {
    throw new CosiError('COSI_ERR_USAGE', `unsupported URL scheme in ${urlOrPath.split('//')[0]}//...: use http, https, s3, az, file or a path`);
  }
  return new FileSource(urlOrPath);
}
