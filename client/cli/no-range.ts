/**
 * What the commands share for a server that ignores Range requests: the
 * switch to their fallback, and the one front-to-back pass each fallback
 * makes, held to --metadata-sha384.
 */
import { isCosiError } from '../../shared/errors.js';
import { HttpSource } from '../../shared/transport/http/source.js';
import { checkPin, type OpenOptions } from '../image.js';
import { sequentialPass, type SequentialHandlers } from '../sequential.js';

/** `attempt`'s answer, or `onNoRange`'s when attempt fails because the server ignores Range requests. */
export async function orWithoutRange<T, U>(attempt: () => Promise<T>, onNoRange: () => Promise<U>): Promise<T | U> {
  try {
    return await attempt();
  } catch (err) {
    if (!isCosiError(err, 'COSI_ERR_RANGE_UNSUPPORTED')) throw err;
    return onNoRange();
  }
}

export type Pass = (handlers: SequentialHandlers) => ReturnType<typeof sequentialPass>;

/**
 * Runs `body` with a plain-GET source of the whole archive and a `pass` over
 * it that refuses metadata.json unless it has the pinned SHA-384 and holds
 * to --max-metadata-size; closes the source after. `onCosi` runs once the
 * answer proved to be a COSI archive (its metadata passed), before the
 * caller's onMetadata: the place for the "no Range support" warnings, which
 * would be false for a page, an API answer or /metrics that answered 200.
 */
export async function withWholeArchive<T>(url: string, opts: OpenOptions, onCosi: () => void, body: (src: HttpSource, pass: Pass) => Promise<T>): Promise<T> {
  const src = new HttpSource(url, opts);
  const pin = checkPin(opts.metadataSha384);
  const pass: Pass = (handlers) =>
    sequentialPass(src, {
      ...handlers,
      onMetadata: (meta, sha) => {
        onCosi();
        return handlers.onMetadata(meta, sha);
      },
    }, { metadataSha384: pin, maxMetadataBytes: opts.maxMetadataBytes });
  try {
    return await body(src, pass);
  } finally {
    await src.close();
  }
}
