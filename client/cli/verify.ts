/**
 * cosi-fetch verify: every image decoded and its size checked, and its
 * SHA-384 where it has one, fetched by ranges, or in one pass over the whole
 * archive when the server ignores Range. Images without a SHA-384 (COSI 1.0)
 * are named in the report, and fail the command unless --allow-unverified.
 */
import { CosiError } from '../../shared/errors.js';
import { allImageFiles, type ImageFile } from '../../shared/format/metadata.js';
import { countingSink, type VerifiedImage } from '../image.js';
import { orWithoutRange, withWholeArchive } from './no-range.js';
import type { Common } from './options.js';
import { openImage, print, summaryBase, unverifiedNote } from './report.js';

/** The report, and exit 4 when bytes went unverified without --allow-unverified. */
function conclude(url: string, images: VerifiedImage[], c: Common, json: Record<string, unknown>, how: string): void {
  const unverified = images.filter((i) => !i.verified).map((i) => i.path);
  const ok = unverified.length === 0 || c.open.allowUnverified === true;
  if (c.json) print({ mode: 'verify', ok, ...json, unverified, images });
  if (!ok) {
    throw new CosiError('COSI_ERR_UNVERIFIED', `${url}: NOT VERIFIED: ${unverifiedNote(unverified)}; pass --allow-unverified to accept that`, { details: { unverified } });
  }
  if (c.json || c.quiet) return;
  if (unverified.length === 0) process.stdout.write(`${url}: OK (${images.length} images${how}, every SHA-384 and size checked)\n`);
  else process.stdout.write(`${url}: OK with --allow-unverified (${images.length} images${how}; ${unverifiedNote(unverified)})\n`);
}

async function verifyRanged(url: string, c: Common, started: number): Promise<void> {
  const img = await openImage(url, c);
  try {
    const images = await img.verify({ jobs: c.jobs, jobsGiven: c.jobsGiven, progress: c.progress });
    c.progress.close();
    conclude(url, images, c, { ...summaryBase(url, img.stats(), started, c), metadataSha384: img.metadataSha384 }, '');
  } finally {
    c.progress.close();
    await img.close();
  }
}

async function verifySequentially(url: string, c: Common, started: number): Promise<void> {
  const seen: ImageFile[] = [];
  let sha = '';
  const noRange = () => c.warn(`${url}: the server does not support Range requests; verifying in one pass over the whole archive`);
  const stats = await withWholeArchive(url, c.open, noRange, async (src, pass) => {
    const { metadata } = await pass({
      onMetadata: (_m, s) => {
        sha = s;
      },
      onWarning: c.warn,
      sinkFor: (image) => {
        seen.push(image);
        return countingSink();
      },
    });
    const missing = allImageFiles(metadata).filter((i) => i.path !== metadata.disk?.gptRegions?.[0]?.image.path && !seen.some((s) => s.path === i.path));
    if (missing.length > 0) throw new CosiError('COSI_ERR_INVALID', `${src.name}: the archive has no ${missing.map((i) => i.path).join(', ')}`);
    return src.stats;
  });
  const images = seen.map((i) => ({ path: i.path, compressedSize: i.compressedSize, uncompressedSize: i.uncompressedSize, sha384: i.sha384, verified: i.sha384 !== undefined }));
  conclude(url, images, c, { sequential: true, ...summaryBase(url, stats, started, c), metadataSha384: sha }, ' checked in one pass');
}

/** The ranged check; a server that ignores Range, even partway, gets the one-pass check instead. */
export async function verify(url: string, c: Common): Promise<void> {
  const started = Date.now();
  await orWithoutRange(
    () => verifyRanged(url, c, started),
    () => verifySequentially(url, c, started),
  );
}
