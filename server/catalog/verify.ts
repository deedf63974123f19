/**
 * --verify: read every partition image once and hold its SHA-384 against
 * the metadata, so bit rot on the server shows up in the catalog before a
 * client downloads it. Runs one image at a time to stay out of the way.
 */
import { createHash } from 'node:crypto';
import type { OpenArchive } from './catalog.js';

/** Marks each partition 'ok' or with the reason; returns how many are corrupt. */
export async function verifyRecord(a: OpenArchive): Promise<number> {
  let corrupt = 0;
  for (const p of a.record.archive?.partitions ?? []) {
    if (!p.entry) continue;
    const want = p.info.image.sha384?.toLowerCase();
    if (!want) {
      p.verified = 'no sha384 in metadata';
      continue;
    }
    const h = createHash('sha384');
    let n = 0;
    for await (const chunk of a.stream(p.entry.dataOffset, p.entry.size)) {
      h.update(chunk as Buffer);
      n += (chunk as Buffer).length;
    }
    const got = h.digest('hex');
    if (n !== p.entry.size) p.verified = `short read: ${n} of ${p.entry.size} bytes`;
    else p.verified = got === want ? 'ok' : `SHA-384 mismatch: stored bytes hash to ${got}`;
    if (p.verified !== 'ok') corrupt++;
  }
  return corrupt;
}
