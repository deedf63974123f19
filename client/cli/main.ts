/**
 * cosi-fetch: fetch partitions or whole disks from a COSI image over HTTP
 * (or a local path), verifying as it writes. Progress and warnings go to
 * stderr; stdout carries only the table, or the --json summary. Loaded by
 * cli.ts, which first sets up what must precede loading: the compile cache,
 * the V8 flags and the decode worker's boot.
 */
import { join } from 'node:path';
import { closeSharedAgents } from '../../shared/transport/http/agent.js';
import { HttpSource } from '../../shared/transport/http/source.js';
import { CosiError, isCosiError } from '../../shared/errors.js';
import { intOption, parseCli, runMain } from '../../shared/cli/run.js';
import { allImageFiles, listPartitions, type CosiMetadata, type ImageFile, type PartitionInfo } from '../../shared/format/metadata.js';
import { selectPartition } from '../../shared/format/select.js';
import type { Gpt } from '../../shared/disk/gpt.js';
import { assertPinned, checkPin, CosiImage, countingSink, pool, type OpenOptions, type TransferStats } from '../image.js';
import { formatBytes } from '../../shared/units.js';
import { abortTarget, commitTarget, isDirectory, openTarget, type Target } from '../output.js';
import { BarProgress, JsonProgress, NullProgress, type Progress } from '../progress.js';
import { RangeWriter } from '../range-writer.js';
import { sequentialPass } from '../sequential.js';
import { defaultFileName, labelOf, writeDisk, writePartition, type PartitionResult } from '../write.js';

const PROG = 'cosi-fetch';

const USAGE = `usage: cosi-fetch --partition SEL [--partition SEL...] [-o FILE|DIR|DEVICE] URL
       cosi-fetch --disk -o FILE|DEVICE URL
       cosi-fetch inspect [--json] URL
       cosi-fetch verify [--json] URL

URL is http(s)://..., file://... or a local path.
SEL is a partition type (root, esp, srv, ...), a mount point (/var), a GPT number or an image path.

options:
  -p, --partition SEL        a partition to fetch (repeatable; several need -o DIR)
  -d, --disk                 the whole disk: partition table, every partition, backup GPT
  -o, --output PATH          file, directory or block device (default: current directory)
      --verify-after         read the output back and compare after writing
      --grow                 grow shrunk ext2/3/4 filesystems to fill their partitions
      --metadata-sha384 HEX  refuse the image unless metadata.json has this SHA-384
      --mirror URL           the same file elsewhere, used when the first fails (repeatable)
  -H, --header 'K: V'        extra request header (repeatable)
  -j, --jobs N               images fetched at once (default 2, as long as their zstd windows
                             fit in one full window plus 64 MiB; an explicit N allows N windows)
      --progress MODE        auto (a bar when stderr is a terminal), bar, json, none
      --json                 print a JSON summary on stdout
      --timeout SEC          give up on a connection idle this long, or below 1 KiB/s for twice
                             as long, then resume (default 30)
      --retries N            failures tolerated per transfer (default 6)
  -q, --quiet                no warnings on stderr
  -h, --help
`;

interface Common {
  json: boolean;
  quiet: boolean;
  jobs: number;
  /** --jobs as given: lifts the decoder memory budget (see CosiImage.decodeBudget). */
  jobsGiven?: number;
  progress: Progress;
  open: OpenOptions;
  warnings: string[];
  warn: (s: string) => void;
}

function parseHeaders(list: string[] | undefined): Record<string, string> | undefined {
  if (!list || list.length === 0) return undefined;
  const out: Record<string, string> = {};
  for (const h of list) {
    const i = h.indexOf(':');
    if (i <= 0) throw new CosiError('COSI_ERR_USAGE', `--header must look like 'Name: value', got ${JSON.stringify(h)}`);
    out[h.slice(0, i).trim()] = h.slice(i + 1).trim();
  }
  return out;
}

function makeProgress(mode: string | undefined): Progress {
  const m = mode ?? 'auto';
  if (m === 'json') return new JsonProgress(process.stderr);
  if (m === 'none') return new NullProgress();
  if (m === 'bar') return new BarProgress(process.stderr);
  if (m === 'auto') return process.stderr.isTTY ? new BarProgress(process.stderr) : new NullProgress();
  throw new CosiError('COSI_ERR_USAGE', `--progress must be auto, bar, json or none, got ${JSON.stringify(m)}`);
}

const human = (n: number): string => formatBytes(n);

function summaryBase(url: string, stats: TransferStats, started: number, c: Common) {
  return { url, requests: stats.requests, bytesTransferred: stats.bytes, seconds: (Date.now() - started) / 1000, warnings: c.warnings };
}

function print(obj: unknown): void {
  process.stdout.write(JSON.stringify(obj, null, 2) + '\n');
}

/** -o for each selected partition: a directory gets default names, a single output may be a file or device. */
async function outputPaths(parts: PartitionInfo[], all: PartitionInfo[], output: string | undefined): Promise<string[]> {
  const dir = output === undefined ? '.' : (await isDirectory(output)) ? output : undefined;
  if (dir !== undefined) {
    const names = parts.map((p) => defaultFileName(p, all));
    return names.map((n) => join(dir, n));
  }
  if (parts.length > 1) throw new CosiError('COSI_ERR_USAGE', `several partitions need -o DIR (an existing directory); ${output} is not one`);
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

async function fetchPartitions(url: string, selectors: string[], output: string | undefined, v: { grow: boolean; verifyAfter: boolean }, c: Common): Promise<void> {
  const started = Date.now();
  let img: CosiImage;
  try {
    img = await CosiImage.open(url, c.open);
  } catch (err) {
    if (isCosiError(err, 'COSI_ERR_RANGE_UNSUPPORTED')) return sequentialFetch(url, selectors, output, v, c, started);
    throw err;
  }
  try {
    const chosen = uniqueSelection(img.partitions, selectors);
    const outs = await outputPaths(chosen, img.partitions, output);
    const results = await pool(chosen, c.jobs, (p, i) => writePartition(img, p, outs[i]!, { ...v, progress: c.progress, warn: c.warn, syncWrites: true }), img.decodeBudget(c.jobsGiven));
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
  if (c.json) {
    print({ mode: 'partition', ...base, metadataSha384, ...extra, partitions: results });
  } else if (!c.quiet) {
    for (const r of results) {
      process.stderr.write(`${PROG}: ${r.label}: ${human(r.uncompressedSize)} written to ${r.output}${r.grown ? ' (grown)' : ''}${r.verifiedAfter ? ' (verified after)' : ''}\n`);
    }
  }
}

/** No Range: one pass over the whole archive, taking the partitions as they pass. */
async function sequentialFetch(
  url: string,
  selectors: string[],
  output: string | undefined,
  v: { grow: boolean; verifyAfter: boolean },
  c: Common,
  started: number,
): Promise<void> {
  c.warn(`${url}: the server does not support Range requests; downloading the whole archive to take ${selectors.length === 1 ? 'one partition' : 'the partitions'} from it (more bandwidth than needed)`);
  if (v.grow || v.verifyAfter) c.warn('--grow and --verify-after are not available without Range support; skipped');
  const src = new HttpSource(url, c.open);
  const pin = checkPin(c.open.metadataSha384);
  const targets = new Map<string, { t: Target; w: RangeWriter; p: PartitionInfo }>();
  let chosen: PartitionInfo[] = [];
  let outs: string[] = [];
  let all: PartitionInfo[] = [];
  let metaSha = '';
  try {
    await sequentialPass(src, {
      onMetadata: async (meta, sha) => {
        assertPinned(src.name, pin, sha);
        metaSha = sha;
        all = listPartitions(meta);
        chosen = uniqueSelection(all, selectors);
        outs = await outputPaths(chosen, all, output);
      },
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
      done: () => chosen.length > 0 && chosen.every((p) => targets.has(p.path) && targets.get(p.path)!.w.writableFinished),
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
        compressedSize: p.image.compressedSize, uncompressedSize: p.image.uncompressedSize, sha384: p.image.sha384,
        shrunk: false, grown: false, holeBytes: w.holes, verifiedAfter: false, seconds: (Date.now() - started) / 1000,
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
    await src.close();
  }
}

async function fetchDisk(url: string, output: string | undefined, v: { grow: boolean; verifyAfter: boolean }, c: Common): Promise<void> {
  if (!output) throw new CosiError('COSI_ERR_USAGE', '--disk needs -o FILE or -o DEVICE');
  const started = Date.now();
  let img: CosiImage;
  try {
    img = await CosiImage.open(url, c.open);
  } catch (err) {
    if (isCosiError(err, 'COSI_ERR_RANGE_UNSUPPORTED')) {
      throw new CosiError('COSI_ERR_RANGE_UNSUPPORTED', `${url}: the server does not support Range requests, which --disk needs; fetch partitions one by one instead`);
    }
    throw err;
  }
  try {
    const r = await writeDisk(img, output, { ...v, jobs: c.jobs, jobsGiven: c.jobsGiven, progress: c.progress, warn: c.warn, syncWrites: true });
    c.progress.close();
    for (const s of r.shrunk) {
      if (!s.grown) c.warn(`${s.label} (#${s.number}): the filesystem image (${s.imageSize} bytes) is smaller than its partition (${s.partitionSize} bytes); use --grow to fill it`);
    }
    if (c.json) {
      print({ mode: 'disk', ...summaryBase(url, img.stats(), started, c), metadataSha384: img.metadataSha384, ...r, warnings: c.warnings });
    } else if (!c.quiet) {
      process.stderr.write(`${PROG}: disk of ${human(r.diskSize)} written to ${output} (${r.partitions.length} partitions${r.shrunk.length ? `, ${r.shrunk.length} shrunk` : ''})\n`);
    }
  } finally {
    c.progress.close();
    await img.close();
  }
}

function row(cells: string[], widths: number[]): string {
  return cells.map((s, i) => (i === cells.length - 1 ? s : s.padEnd(widths[i]!))).join('  ').trimEnd();
}

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
  };
}

async function inspect(url: string, c: Common): Promise<void> {
  const started = Date.now();
  let view: ReturnType<typeof inspectView>;
  let stats: TransferStats;
  try {
    const img = await CosiImage.open(url, c.open);
    try {
      view = inspectView(img.metadata, img.metadataSha384, img.gpt, img.partitions);
      stats = img.stats();
    } finally {
      await img.close();
    }
  } catch (err) {
    if (!isCosiError(err, 'COSI_ERR_RANGE_UNSUPPORTED')) throw err;
    c.warn(`${url}: the server does not support Range requests; reading the archive from the start`);
    const src = new HttpSource(url, c.open);
    const pin = checkPin(c.open.metadataSha384);
    let meta: CosiMetadata | undefined;
    let sha = '';
    let gpt: Gpt | undefined;
    try {
      await sequentialPass(src, {
        onMetadata: (m, s) => {
          assertPinned(src.name, pin, s);
          meta = m;
          sha = s;
        },
        onGpt: (g) => void (gpt = g),
        sinkFor: () => undefined,
        done: () => meta !== undefined && (gpt !== undefined || !meta.disk),
      });
    } finally {
      await src.close();
    }
    view = inspectView(meta!, sha, gpt, listPartitions(meta!, gpt));
    stats = src.stats;
  }
  if (c.json) {
    print({ ...view, ...summaryBase(url, stats, started, c) });
    return;
  }
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
    p.ratio === null ? '-' : `${p.ratio}x`,
    p.path,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  out.push(row(header, widths));
  for (const r of rows) out.push(row(r, widths));
  process.stdout.write(out.join('\n') + '\n');
}

async function verify(url: string, c: Common): Promise<void> {
  const started = Date.now();
  try {
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
  } catch (err) {
    if (!isCosiError(err, 'COSI_ERR_RANGE_UNSUPPORTED')) throw err;
    c.warn(`${url}: the server does not support Range requests; verifying in one pass over the whole archive`);
    const src = new HttpSource(url, c.open);
    const pin = checkPin(c.open.metadataSha384);
    const seen: ImageFile[] = [];
    let sha = '';
    try {
      const { metadata } = await sequentialPass(src, {
        onMetadata: (_m, s) => {
          assertPinned(src.name, pin, s);
          sha = s;
        },
        sinkFor: (image) => {
          seen.push(image);
          return countingSink();
        },
      });
      const missing = allImageFiles(metadata).filter((i) => i.path !== metadata.disk?.gptRegions?.[0]?.image.path && !seen.some((s) => s.path === i.path));
      if (missing.length > 0) throw new CosiError('COSI_ERR_INVALID', `${src.name}: the archive has no ${missing.map((i) => i.path).join(', ')}`);
    } finally {
      await src.close();
    }
    if (c.json) print({ mode: 'verify', ok: true, sequential: true, ...summaryBase(url, src.stats, started, c), metadataSha384: sha, images: seen });
    else if (!c.quiet) process.stdout.write(`${url}: OK (${seen.length} images checked in one pass)\n`);
  }
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const command = argv[0] === 'inspect' || argv[0] === 'verify' || argv[0] === 'fetch' ? argv.shift()! : 'fetch';
  const { values, positionals } = parseCli({
    args: argv,
    allowPositionals: true,
    options: {
      partition: { type: 'string', short: 'p', multiple: true },
      disk: { type: 'boolean', short: 'd' },
      output: { type: 'string', short: 'o' },
      'verify-after': { type: 'boolean' },
      grow: { type: 'boolean' },
      'metadata-sha384': { type: 'string' },
      mirror: { type: 'string', multiple: true },
      header: { type: 'string', short: 'H', multiple: true },
      jobs: { type: 'string', short: 'j' },
      progress: { type: 'string' },
      json: { type: 'boolean' },
      timeout: { type: 'string' },
      retries: { type: 'string' },
      quiet: { type: 'boolean', short: 'q' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (positionals.length !== 1) throw new CosiError('COSI_ERR_USAGE', positionals.length === 0 ? `a URL or path is needed (see ${PROG} --help)` : `one URL only, got ${positionals.length}`);
  const url = positionals[0]!;
  const warnings: string[] = [];
  const quiet = values.quiet ?? false;
  const timeout = intOption('timeout', values.timeout, 1, 86400);
  const c: Common = {
    json: values.json ?? false,
    quiet,
    jobs: intOption('jobs', values.jobs, 1, 64) ?? 2,
    jobsGiven: intOption('jobs', values.jobs, 1, 64),
    progress: makeProgress(values.progress),
    open: {
      mirrors: values.mirror,
      headers: parseHeaders(values.header),
      metadataSha384: checkPin(values['metadata-sha384']),
      idleTimeoutMs: timeout === undefined ? undefined : timeout * 1000,
      // A trickling server never goes idle: the low-speed window follows --timeout (2x, as the defaults 30 s / 60 s).
      lowSpeedWindowMs: timeout === undefined ? undefined : 2 * timeout * 1000,
      retries: intOption('retries', values.retries, 0, 1000),
    },
    warnings,
    warn: (s) => {
      warnings.push(s);
      if (!quiet) process.stderr.write(`${PROG}: warning: ${s}\n`);
    },
  };
  const v = { grow: values.grow ?? false, verifyAfter: values['verify-after'] ?? false };
  try {
    if (command === 'inspect') await inspect(url, c);
    else if (command === 'verify') await verify(url, c);
    else if (values.disk) {
      if (values.partition?.length) throw new CosiError('COSI_ERR_USAGE', '--disk and --partition exclude each other');
      await fetchDisk(url, values.output, v, c);
    } else if (values.partition?.length) {
      await fetchPartitions(url, values.partition, values.output, v, c);
    } else {
      throw new CosiError('COSI_ERR_USAGE', `say what to fetch: --partition SEL or --disk (see ${PROG} --help)`);
    }
  } finally {
    await closeSharedAgents().catch(() => undefined);
  }
  return 0;
}

await runMain(PROG, main);
