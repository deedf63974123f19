/**
 * cosi-fetch inspect: what an image holds (OS, disk layout, one row per
 * partition), as a table or as JSON; from metadata.json and the primary GPT
 * alone, read from the start of the archive when the server ignores Range.
 */
import { unhashedImages } from '../../shared/format/check.js';
import { allImageFiles, listPartitions, type CosiMetadata, type PartitionInfo } from '../../shared/format/metadata.js';
import type { Gpt } from '../../shared/disk/gpt.js';
import type { TransferStats } from '../image.js';
import { orWithoutRange, withWholeArchive } from './no-range.js';
import type { Common } from './options.js';
import { human, openImage, print, summaryBase } from './report.js';
import { formatRatio } from '../../shared/units.js';

type View = ReturnType<typeof inspectView>;

function inspectView(meta: CosiMetadata, metadataSha384: string, gpt: Gpt | undefined, parts: PartitionInfo[]) {
  return {
    version: meta.version,
    id: meta.id,
    osArch: meta.osArch,
    osRelease: meta.osRelease,
    metadataSha384,
    disk: meta.disk ? { size: meta.disk.size, lbaSize: meta.disk.lbaSize, type: meta.disk.type } : undefined,
    bootloader: meta.bootloader?.type,
    packages: meta.osPackages?.length,
    partitions: parts.map((p) => ({
      number: p.number,
      type: p.dpsName,
      partType: p.partType,
      mountPoint: p.mountPoint,
      fsType: p.fsType,
      fsUuid: p.fsUuid,
      path: p.path,
      partitionSize: p.gptPartition?.size,
      uncompressedSize: p.image.uncompressedSize,
      compressedSize: p.image.compressedSize,
      ratio: p.image.compressedSize > 0 ? Math.round((p.image.uncompressedSize / p.image.compressedSize) * 10) / 10 : null,
      shrunk: p.shrunk ?? false,
      sha384: p.image.sha384,
    })),
    gptPartitions: gpt?.partitions.length,
    /** Images without a SHA-384 (COSI 1.0): fetching them needs --allow-unverified. */
    unverified: unhashedImages(allImageFiles(meta)),
  };
}

async function rangedView(url: string, c: Common): Promise<{ view: View; stats: TransferStats }> {
  const img = await openImage(url, c);
  try {
    return { view: inspectView(img.metadata, img.metadataSha384, img.gpt, img.partitions), stats: img.stats() };
  } finally {
    await img.close();
  }
}

async function sequentialView(url: string, c: Common): Promise<{ view: View; stats: TransferStats }> {
  let meta: CosiMetadata | undefined;
  let sha = '';
  let gpt: Gpt | undefined;
  const noRange = () => c.warn(`${url}: the server does not support Range requests; reading the archive from the start (its metadata and GPT are checked, not its tar index)`);
  const stats = await withWholeArchive(url, c.open, noRange, async (src, pass) => {
    await pass({
      onMetadata: (m, s) => {
        meta = m;
        sha = s;
      },
      onGpt: (g) => void (gpt = g),
      onWarning: c.warn,
      sinkFor: () => undefined,
      done: () => meta !== undefined && (gpt !== undefined || !meta.disk),
    });
    return src.stats;
  });
  return { view: inspectView(meta!, sha, gpt, listPartitions(meta!, gpt)), stats };
}

function row(cells: string[], widths: number[]): string {
  return cells.map((s, i) => (i === cells.length - 1 ? s : s.padEnd(widths[i]!))).join('  ').trimEnd();
}

function table(view: View): string {
  const out: string[] = [];
  out.push(`COSI ${view.version}  ${view.osArch}  ${view.disk ? `disk ${human(view.disk.size)}, ${view.disk.lbaSize}-byte sectors` : 'no disk layout'}`);
  const pretty = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(view.osRelease ?? '')?.[1];
  if (pretty) out.push(`OS: ${pretty}`);
  out.push(`metadata.json SHA-384: ${view.metadataSha384}`);
  out.push('');
  const header = ['#', 'TYPE', 'MOUNT', 'FS', 'PARTITION', 'IMAGE', 'COMPRESSED', 'RATIO', 'PATH'];
  const rows = view.partitions.map((p) => [
    p.number === undefined ? '-' : String(p.number),
    p.type ?? '-',
    p.mountPoint ?? '-',
    p.fsType ?? '-',
    p.partitionSize === undefined ? '-' : human(p.partitionSize),
    human(p.uncompressedSize) + (p.shrunk ? ' (shrunk)' : ''),
    human(p.compressedSize),
    formatRatio(p.compressedSize, p.uncompressedSize),
    p.path,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  out.push(row(header, widths));
  for (const r of rows) out.push(row(r, widths));
  if (view.unverified.length > 0) {
    out.push('');
    out.push(`NOT VERIFIABLE (no SHA-384, COSI 1.0): ${view.unverified.join(', ')}; fetching ${view.unverified.length === 1 ? 'it' : 'them'} needs --allow-unverified`);
  }
  return out.join('\n') + '\n';
}

export async function inspect(url: string, c: Common): Promise<void> {
  const started = Date.now();
  const { view, stats } = await orWithoutRange(
    () => rangedView(url, c),
    () => sequentialView(url, c),
  );
  if (c.json) print({ ...view, ...summaryBase(url, stats, started, c) });
  else process.stdout.write(table(view));
}
