/**
 * cosi-fetch verify: every image's SHA-384 and size checked, fetched by
 * ranges, or in one pass over the whole archive when the server ignores Range.
 */
import { CosiError } from '../../shared/errors.js';
import { allImageFiles, type ImageFile } from '../../shared/format/metadata.js';
import { CosiImage, countingSink } from '../image.js';
import { orWithoutRange, withWholeArchive } from './no-range.js';
import type { Common } from './options.js';
import { print, summaryBase } from './report.js';

async function verifyRanged(url: string, c: Common, started: number): Promise<void> {
  const img = await CosiImage.open(url, c.open);
  try {
    const images = await img.verify({ jobs: c.jobs, jobsGiven: c.jobsGiven, progress: c.progress });
    c.progress.close();
    if (c.json) print({ mode: 'verify', ok: true, ...summaryBase(url, img.stats(), started, c), metadataSha384: img.metadataSha384, images });
    else if (!c.quiet) process.stdout.write(`${url}: OK (${images.length} images, every SHA-384 and size checked)\n`);
  } finally {
    c.progress.close();
    await img.close();
  }
}

async function verifySequentially(url: string, c: Common, started: number): Promise<void> {
  c.warn(`${url}: the server does not support Range requests; verifying in one pass over the whole archive`);
  const seen: ImageFile[] = [];
  let sha = '';
  const stats = await withWholeArchive(url, c.open, async (src, pass) => {
    const { metadata } = await pass({
      onMetadata: (_m, s) => {
        sha = s;
      },
      sinkFor: (image) => {
        seen.push(image);
        return countingSink();
      },
    });
    const missing = allImageFiles(metadata).filter((i) => i.path !== metadata.disk?.gptRegions?.[0]?.image.path && !seen.some((s) => s.path === i.path));
    if (missing.length > 0) throw new CosiError('COSI_ERR_INVALID', `${src.name}: the archive has no ${missing.map((i) => i.path).join(', ')}`);
    return src.stats;
  });
  if (c.json) print({ mode: 'verify', ok: true, sequential: true, ...summaryBase(url, stats, started, c), metadataSha384: sha, images: seen });
  else if (!c.quiet) process.stdout.write(`${url}: OK (${seen.length} images checked in one pass)\n`);
}

/** The ranged check; a server that ignores Range, even partway, gets the one-pass check instead. */
export async function verify(url: string, c: Common): Promise<void> {
  const started = Date.now();
  await orWithoutRange(
    () => verifyRanged(url, c, started),
    () => verifySequentially(url, c, started),
  );
}
