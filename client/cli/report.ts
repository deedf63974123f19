/**
 * What the commands print: sizes for people, the fields every --json summary
 * starts with, and the summary itself on stdout.
 */
import { formatBytes } from '../../shared/units.js';
import { decoderName } from '../../shared/zstd/index.js';
import type { TransferStats } from '../image.js';
import type { Common } from './options.js';

export const human = (n: number): string => formatBytes(n);

/** `decoder`: the zstd engine this process decodes with (node:zlib, zstd program or fzstd), for every command alike. */
export function summaryBase(url: string, stats: TransferStats, started: number, c: Common) {
  return { url, requests: stats.requests, bytesTransferred: stats.bytes, seconds: (Date.now() - started) / 1000, decoder: decoderName(), warnings: c.warnings };
}

export function print(obj: unknown): void {
  process.stdout.write(JSON.stringify(obj, null, 2) + '\n');
}
