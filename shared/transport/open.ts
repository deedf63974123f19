/** Open a byte source by what the user typed: a path, a file:// URL or an http(s) URL. */
import { fileURLToPath } from 'node:url';
import { CosiError } from '../errors.js';
import { FileSource } from './file-source.js';
import { HttpSource } from './http/source.js';
import type { HttpSourceOptions } from './http/options.js';

/** A local path or file:// URL as a FileSource, an http(s) URL as an HttpSource. */
export function openSource(urlOrPath: string, opts?: HttpSourceOptions): FileSource | HttpSource {
  if (/^https?:\/\//i.test(urlOrPath)) return new HttpSource(urlOrPath, opts);
  if (/^file:/i.test(urlOrPath)) {
    try {
      return new FileSource(fileURLToPath(urlOrPath));
    } catch {
      throw new CosiError('COSI_ERR_USAGE', `not a usable file URL: ${urlOrPath}`);
    }
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(urlOrPath)) {
    throw new CosiError('COSI_ERR_USAGE', `unsupported URL scheme in ${urlOrPath.split('//')[0]}//...: use http, https, file or a path`);
  }
  return new FileSource(urlOrPath);
}
