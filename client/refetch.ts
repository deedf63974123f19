/**
 * One more fetch of an image whose bytes failed their SHA-384 on the way from
 * a server. A cache that cuts ranges into slices (nginx's slice module, the
 * CDN stand-in in deploy/) and loses its origin in the middle of one goes on
 * with the next slice in the same response: the body arrives with bytes
 * missing inside it, and only the image's SHA-384 (or its zstd stream, which
 * the hash then confirms) can tell. The slices it holds are whole, so the
 * same request made again a moment later is answered right. The image is
 * fetched again from its start, once, and its SHA-384 judges that fetch as it
 * judged the first: nothing unverified is ever kept. A local file reads the
 * same bytes twice, so it gets no second read.
 */
import { isCosiError } from '../shared/errors.js';
import type { PartitionInfo } from '../shared/format/metadata.js';
import { FileSource } from '../shared/transport/file-source.js';
import { HandleSource } from '../shared/transport/handle-source.js';
import type { CosiImage } from './image.js';

/** Whether `err` from fetching an image of `img` is worth one more fetch: a SHA-384 mismatch on bytes that came over a network. */
export function refetchable(img: CosiImage, err: unknown): boolean {
  if (!isCosiError(err, 'COSI_ERR_HASH_MISMATCH')) return false;
  const inner = img.source.inner;
  return !(inner instanceof FileSource || inner instanceof HandleSource);
}

/**
 * `attempt(false)`, and once more as `attempt(true)` when it failed with a
 * refetchable error. `attempt` must leave nothing of a failed run that the
 * next one would not overwrite: told that it runs again, it writes every byte,
 * holes included, where the first run may have written something else.
 */
export async function refetchOnce<T>(img: CosiImage, p: PartitionInfo, warn: ((line: string) => void) | undefined, attempt: (again: boolean) => Promise<T>): Promise<T> {
  try {
    return await attempt(false);
  } catch (err) {
    if (!refetchable(img, err)) throw err;
    warn?.(`${p.path}: SHA-384 mismatch; fetching it again from its start (a cache in front of the server may have joined a transfer it lost into the response)`);
    return attempt(true);
  }
}
