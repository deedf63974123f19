/**
 * Bearer tokens for private catalogs. Tokens are compared as SHA-256
 * digests with timingSafeEqual, and every configured token is checked on
 * every request, so neither length nor position leaks through timing.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { CosiError } from '../shared/errors.js';
import { systemError } from '../shared/errno.js';

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/** One token per line; blank lines and '#' comments are skipped. */
export async function loadTokens(path: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw systemError(`--token-file ${path}`, err, { code: 'COSI_ERR_USAGE' });
  }
  const tokens = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  if (tokens.length === 0) throw new CosiError('COSI_ERR_USAGE', `--token-file ${path} holds no tokens`);
  return tokens;
}

export function bearerAuthorizer(tokens: string[]): (header: string | undefined) => boolean {
  const want = tokens.map(digest);
  return (header) => {
    const m = header === undefined ? null : /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    const got = digest(m ? m[1]! : '');
    let ok = false;
    for (const w of want) ok = timingSafeEqual(w, got) || ok;
    return ok && m !== null;
  };
}
