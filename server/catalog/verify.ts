/**
 * --verify: read every partition image once and hold its SHA-384 against
 * the metadata, so bit rot on the server shows up in the catalog before a
 * client downloads it. Runs one image at a time to stay out of the way.
 */
import { createHash } from 'node:crypto';
import type { Metrics } from '../metrics.js';
import { identityKey, identityOf, type IndexRecord } from './indexer.js';
import type { OpenArchive } from './open-archive.js';
import type { Known } from './scanner.js';

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

export interface VerifierOptions {
  /** The local archives as last scanned. */
  archives: () => Iterable<Known>;
  open: (id: string) => Promise<OpenArchive | undefined>;
  metrics?: Metrics;
  log?: (event: Record<string, unknown>) => void;
}

/** The background pass over the catalog, and what it found, by file identity. */
export class Verifier {
  private verifying: Promise<void> | undefined;
  private verifyAgain = false;
  private readonly verified = new Map<string, IndexRecord['archive']>();
  private closed = false;

  constructor(private readonly opts: VerifierOptions) {}

  /** The verified archive view of the file with this identity key, if it was verified. */
  resultFor(key: string): IndexRecord['archive'] | undefined {
    return this.verified.get(key);
  }

  /** Verification results of files that no longer exist would only pile up. */
  keepOnly(liveKeys: ReadonlySet<string>): void {
    for (const key of this.verified.keys()) if (!liveKeys.has(key)) this.verified.delete(key);
  }

  /** Resolves once the background verification (if any) has gone through every image. */
  async idle(): Promise<void> {
    while (this.verifying) await this.verifying;
  }

  close(): void {
    this.closed = true;
  }

  start(): void {
    if (this.verifying) {
      // Files found by a scan during this pass get their own pass afterwards.
      this.verifyAgain = true;
      return;
    }
    this.verifyAgain = false;
    this.verifying = (async () => {
      try {
        for (const k of [...this.opts.archives()]) {
          if (this.closed) return;
          if (k.refused || this.verified.has(identityKey(k.identity))) continue;
          const a = await this.opts.open(k.id).catch(() => undefined);
          if (!a) continue;
          try {
            if (!a.fh) continue; // remote: --verify would download it whole
            const key = identityKey(identityOf(await a.fh.stat()));
            if (this.verified.has(key) || !a.record.archive) continue;
            const corrupt = await verifyRecord(a);
            if (corrupt > 0) this.opts.metrics?.inc('cosi_verify_corrupt_total', {}, corrupt);
            this.verified.set(key, a.record.archive);
            this.opts.log?.({ event: 'verified', id: k.id, corrupt });
          } finally {
            await a.release();
          }
        }
      } finally {
        this.verifying = undefined;
        if (this.verifyAgain && !this.closed) this.start();
      }
    })();
  }
}
