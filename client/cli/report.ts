/**
 * What the commands print: sizes for people, the fields every --json summary
 * starts with, the summary itself on stdout, and the image opened with its
 * warnings shown.
 */
import { formatBytes } from '../../shared/units.js';
import { decoderName } from '../../shared/zstd/index.js';
import { CosiImage, type TransferStats } from '../image.js';
import type { Common } from './options.js';

export const human = (n: number): string => formatBytes(n);

/** `decoder`: the zstd engine this process decodes with (node:zlib, zstd program or fzstd), for every command alike. */
export function summaryBase(url: string, stats: TransferStats, started: number, c: Common) {
  return { url, requests: stats.requests, bytesTransferred: stats.bytes, seconds: (Date.now() - started) / 1000, decoder: decoderName(), warnings: c.warnings };
}

export function print(obj: unknown): void {
  process.stdout.write(JSON.stringify(obj, null, 2) + '\n');
}

/** The image, refused when invalid (see CosiImage.open); what it breaks without being refused goes out as warnings. */
export async function openImage(url: string, c: Common): Promise<CosiImage> {
  const img = await CosiImage.open(url, c.open);
  for (const w of img.warnings) c.warn(w.message);
  return img;
}

/** The sentence every report uses for images whose bytes no hash vouches for. */
export function unverifiedNote(paths: string[]): string {
  return `${paths.length === 1 ? '1 image has' : `${paths.length} images have`} no SHA-384 (COSI 1.0), so only ${paths.length === 1 ? 'its' : 'their'} size and zstd stream were checked, not ${paths.length === 1 ? 'its' : 'their'} bytes: ${paths.join(', ')}`;
}
