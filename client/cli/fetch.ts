/**
 * cosi-fetch --partition and --disk: the selected partitions, each to its own
 * output, or the whole disk to one file or device; and, for a server without
 * Range support, the partitions taken from one pass over the whole archive.
 */
import { join } from 'node:path';
import { CosiError } from '../../shared/errors.js';
import { listPartitions, type PartitionInfo } from '../../shared/format/metadata.js';
import { selectPartition } from '../../shared/format/select.js';
import { refuseUnhashed } from '../../shared/format/check.js';
import { pool } from '../image.js';
import { abortTarget, commitTarget, isDirectory, openTarget, pathExists, type Target } from '../output.js';
import { missingDirectory } from '../../shared/errno.js';
import { RangeWriter } from '../range-writer.js';
import { writePartitionResumable } from '../resume.js';
import { defaultFileName, labelOf, writeDisk, writePartition, type PartitionResult } from '../write.js';
import { orWithoutRange, withWholeArchive } from './no-range.js';
import { refuseSourceAsOutput } from './self-output.js';
import { PROG, type Common, type WriteChoices } from './options.js';
import { human, openImage, print, summaryBase, unverifiedNote } from './report.js';

/** -o for each selected partition: a directory gets default names, a single output may be a file or device. */
async function outputPaths(parts: PartitionInfo[], all: PartitionInfo[], output: string | undefined): Promise<string[]> {
  const dir = output === undefined ? '.' : (await isDirectory(output)) ? output : undefined;
  if (dir !== undefined) {
    const names = parts.map((p) => defaultFileName(p, all));
    return names.map((n) => join(dir, n));
  }
  if (parts.length > 1) {
    // The same rule as for -o DIR/FILE: a missing directory is an io error with the command that makes it.
    if (!(await pathExists(output!))) throw missingDirectory(`cannot write ${parts.length} partitions into ${output}`, output!.replace(/(.)\/+$/, '$1'));
    throw new CosiError('COSI_ERR_USAGE', `several partitions need -o DIR (an existing directory); ${output} is not one`);
  }
  return [output!];
}

function uniqueSelection(parts: PartitionInfo[], selectors: string[]): PartitionInfo[] {
  const chosen: PartitionInfo[] = [];
  for (const sel of selectors) {
    const p = selectPartition(parts, sel);
    if (!chosen.includes(p)) chosen.push(p);
  }
  return chosen;
}

export async function fetchPartitions(url: string, selectors: string[], output: string | undefined, v: WriteChoices, c: Common): Promise<void> {
  const started = Date.now();
  await refuseSourceAsOutput(url, output === undefined ? [] : [output]);
  const img = await orWithoutRange(
    () => openImage(url, c),
    async () => void (await sequentialFetch(url, selectors, output, v, c, started)),
  );
  if (!img) return;
  try {
    const chosen = uniqueSelection(img.partitions, selectors);
    // Before any output is opened: an image no hash vouches for needs --allow-unverified.
    img.refuseUnverified(chosen.map((p) => p.image));
    const outs = await outputPaths(chosen, img.partitions, output);
    // Default names in -o DIR too: the archive may sit there under one of them.
    await refuseSourceAsOutput(url, outs);
    if (v.resume && (v.grow || v.verifyAfter)) throw new CosiError('COSI_ERR_USAGE', '--resume does not combine with --grow or --verify-after');
    const write = v.resume ? writePartitionResumable : writePartition;
    const results = await pool(chosen, c.jobs, (p, i) => write(img, p, outs[i]!, { ...v, progress: c.progress, warn: c.warn, syncWrites: true }), img.decodeBudget(c.jobsGiven));
    c.progress.close();
    report(results, img.metadataSha384, summaryBase(url, img.stats(), started, c), c);
  } finally {
    c.progress.close();
    await img.close();
  }
}

function report(results: PartitionResult[], metadataSha384: string, base: ReturnType<typeof summaryBase>, c: Common, extra: Record<string, unknown> = {}): void {
  for (const r of results) {
    if (r.shrunk && !r.grown) c.warn(`${r.label} (${r.path}): the filesystem image (${r.uncompressedSize} bytes) is smaller than its partition (${r.partitionSize} bytes); use --grow to fill it`);
  }
  const unverified = results.filter((r) => !r.verified).map((r) => r.path);
  if (unverified.length > 0) c.warn(unverifiedNote(unverified));
  if (c.json) {
    print({ mode: 'partition', ...base, metadataSha384, ...extra, unverified, partitions: results });
  } else if (!c.quiet) {
    for (const r of results) {
      const notes = `${r.grown ? ' (grown)' : ''}${r.verifiedAfter ? ' (verified after)' : ''}${r.verified ? '' : ' (NOT verified: no SHA-384)'}${r.replaced ? ' (replaced the file that was there)' : ''}`;
      process.stderr.write(`${PROG}: ${r.label}: ${human(r.uncompressedSize)} written to ${r.output}${notes}\n`);
    }
  }
}

/** No Range: one pass over the whole archive, taking the partitions as they pass. */
async function sequentialFetch(url: string, selectors: string[], output: string | undefined, v: WriteChoices, c: Common, started: number): Promise<void> {
  const noRange = (): void => {
    c.warn(`${url}: the server does not support Range requests; downloading the whole archive to take ${selectors.length === 1 ? 'one partition' : 'the partitions'} from it and check its tar index (more bandwidth than needed)`);
    if (v.grow || v.verifyAfter) c.warn('--grow and --verify-after are not available without Range support; skipped');
    if (v.resume) c.warn('--resume needs Range support to continue; an interrupted fetch from this server starts over');
  };
  await withWholeArchive(url, c.open, noRange, async (src, pass) => {
    const targets = new Map<string, { t: Target; w: RangeWriter; p: PartitionInfo }>();
    let chosen: PartitionInfo[] = [];
    let outs: string[] = [];
    let all: PartitionInfo[] = [];
    let metaSha = '';
    try {
      await pass({
        onMetadata: async (meta, sha) => {
          metaSha = sha;
          all = listPartitions(meta);
          chosen = uniqueSelection(all, selectors);
          refuseUnhashed(src.name, meta.version, chosen.map((p) => p.image), c.open.allowUnverified ?? false);
          outs = await outputPaths(chosen, all, output);
        },
        onWarning: c.warn,
        sinkFor: async (image) => {
          const i = chosen.findIndex((p) => p.path === image.path);
          if (i < 0) return undefined;
          const p = chosen[i]!;
          const t = await openTarget(outs[i]!, { size: image.uncompressedSize });
          const w = new RangeWriter(t.fh, 0, { behind: t.behind, sync: true, sparse: t.kind === 'file', limit: image.uncompressedSize, label: image.path, onBytes: (n) => c.progress.written(image.path, n) });
          targets.set(image.path, { t, w, p });
          c.progress.begin({ path: image.path, label: labelOf(p), total: image.uncompressedSize, compressedTotal: image.compressedSize });
          return w;
        },
        onCompressed: (image, n) => c.progress.compressed(image.path, n),
        // No early stop: a duplicate member further on must still refuse the archive before anything is committed.
      });
      const missing = chosen.filter((p) => !targets.has(p.path));
      if (missing.length > 0) throw new CosiError('COSI_ERR_INVALID', `${src.name}: the archive has no ${missing.map((p) => p.path).join(', ')}`);
      const results: PartitionResult[] = [];
      for (const [i, p] of chosen.entries()) {
        const { t, w } = targets.get(p.path)!;
        await commitTarget(t);
        c.progress.end(p.path, true);
        results.push({
          path: p.path, label: labelOf(p), number: p.number, mountPoint: p.mountPoint, output: outs[i]!, outputKind: t.kind, offset: 0,
          compressedSize: p.image.compressedSize, uncompressedSize: p.image.uncompressedSize, sha384: p.image.sha384, verified: p.image.sha384 !== undefined,
          shrunk: false, grown: false, holeBytes: w.holes, verifiedAfter: false, seconds: (Date.now() - started) / 1000, replaced: t.replaces === true,
        });
      }
      c.progress.close();
      report(results, metaSha, summaryBase(url, src.stats, started, c), c, { sequential: true });
    } catch (err) {
      for (const { t, p } of targets.values()) {
        c.progress.end(p.path, false);
        await abortTarget(t);
      }
      throw err;
    } finally {
      c.progress.close();
    }
  });
}

export async function fetchDisk(url: string, output: string | undefined, v: WriteChoices, c: Common): Promise<void> {
  if (v.resume) throw new CosiError('COSI_ERR_USAGE', '--resume works with --partition (to regular files), not --disk');
  if (!output) throw new CosiError('COSI_ERR_USAGE', '--disk needs -o FILE or -o DEVICE');
  await refuseSourceAsOutput(url, [output]);
  const started = Date.now();
  const img = await orWithoutRange(
    () => openImage(url, c),
    async (): Promise<never> => {
      const noRange = new CosiError('COSI_ERR_RANGE_UNSUPPORTED', `${url}: the server does not support Range requests, which --disk needs; fetch partitions one by one instead`);
      // Said only of a COSI archive: the pass stops at its metadata, and a page or /metrics is named as what it is.
      await withWholeArchive(url, c.open, () => undefined, (_src, pass) => pass({ onMetadata: () => { throw noRange; }, sinkFor: () => undefined }));
      throw noRange;
    },
  );
  try {
    const r = await writeDisk(img, output, { ...v, jobs: c.jobs, jobsGiven: c.jobsGiven, progress: c.progress, warn: c.warn, syncWrites: true });
    c.progress.close();
    for (const s of r.shrunk) {
      if (!s.grown) c.warn(`${s.label} (#${s.number}): the filesystem image (${s.imageSize} bytes) is smaller than its partition (${s.partitionSize} bytes); use --grow to fill it`);
    }
    if (c.json) {
      print({ mode: 'disk', ...summaryBase(url, img.stats(), started, c), metadataSha384: img.metadataSha384, ...r, warnings: c.warnings });
    } else if (!c.quiet) {
      process.stderr.write(`${PROG}: disk of ${human(r.diskSize)} written to ${output} (${r.partitions.length} partitions${r.shrunk.length ? `, ${r.shrunk.length} shrunk` : ''}${r.replaced ? '; replaced the file that was there' : ''})\n`);
    }
  } finally {
    c.progress.close();
    await img.close();
  }
}
