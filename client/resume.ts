/**
 * cosi-fetch --resume: one partition into a regular file, continued across
 * interrupts and crashes. The output grows under a fixed partial name beside
 * it (.NAME.cosi-partial) with a small journal (.NAME.cosi-journal.json) that
 * records how many seek-table entries are written, as a prefix, and the
 * SHA-384 state over their compressed bytes. A rerun with the same arguments
 * checks the journal against the archive (ETag or Last-Modified, the
 * metadata's SHA-384, the image's hash and sizes) and continues from there;
 * anything else starts over. The partial is renamed only after the whole
 * entry's SHA-384 matched, as without --resume.
 *
 * Only framed images (with a seek table) can continue mid-image; others are
 * fetched whole, with a warning. The journal is written after the frames it
 * names were flushed (fdatasync), so a power cut cannot leave it ahead of
 * the data; bytes written past the prefix are written again on resume.
 */
import { open, readFile, rename, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { createSHA384 } from 'hash-wasm';
import { CosiError, isCosiError } from '../shared/errors.js';
import type { PartitionInfo } from '../shared/format/metadata.js';
import type { CosiImage } from './image.js';
import { isBlockDevice, keepOnInterrupt } from './output.js';
import { checkFits, describe, progressItem, writePartition, type PartitionResult, type WriteOptions } from './write.js';

const JOURNAL_VERSION = 1;

/** What must be the same for a rerun to continue a partial output. */
interface Identity {
  source: string;
  version: string | null;
  metadataSha384: string;
  path: string;
  sha384: string | null;
  compressedSize: number;
  uncompressedSize: number;
  entries: number;
}

interface Journal extends Identity {
  v: number;
  /** Seek-table entries written, from the first. */
  done: number;
  /** hash-wasm's saved SHA-384 state after those entries' compressed bytes (base64). */
  state: string;
}

export function resumePaths(output: string): { partial: string; journal: string } {
  const dir = dirname(output);
  const base = basename(output);
  return { partial: join(dir, `.${base}.cosi-partial`), journal: join(dir, `.${base}.cosi-journal.json`) };
}

async function readJournal(path: string): Promise<Journal | undefined> {
  try {
    const j = JSON.parse(await readFile(path, 'utf8')) as Journal;
    return j.v === JOURNAL_VERSION && Number.isInteger(j.done) && typeof j.state === 'string' ? j : undefined;
  } catch {
    return undefined;
  }
}

function sameIdentity(a: Identity, b: Identity): boolean {
  return (Object.keys(b) as Array<keyof Identity>).every((k) => a[k] === b[k]);
}

export async function writePartitionResumable(img: CosiImage, p: PartitionInfo, outPath: string, opts: WriteOptions = {}): Promise<PartitionResult> {
  checkFits(p);
  img.refuseUnverified([p.image]);
  if (await isBlockDevice(outPath)) throw new CosiError('COSI_ERR_USAGE', `--resume writes regular files; ${outPath} is a block device`);
  const frames = await img.seekFrames(p.image);
  if (!frames) {
    opts.warn?.(`${p.path} has no seek table (or the zstd program is missing): --resume cannot continue it mid-image; fetching it whole`);
    return writePartition(img, p, outPath, opts);
  }
  const names = resumePaths(outPath);
  const identity: Identity = {
    source: img.name,
    version: img.sourceVersion() ?? null,
    metadataSha384: img.metadataSha384,
    path: p.image.path,
    sha384: p.image.sha384 ?? null,
    compressedSize: p.image.compressedSize,
    uncompressedSize: p.image.uncompressedSize,
    entries: frames.length,
  };
  // A journal being rewritten when the last run died.
  await unlink(`${names.journal}.tmp`).catch(() => undefined);
  const found = await readJournal(names.journal);
  let journal = found && sameIdentity(found, identity) ? found : undefined;
  const hasher = await createSHA384();
  let fh: FileHandle;
  if (journal) {
    try {
      fh = await open(names.partial, 'r+');
      hasher.load(Buffer.from(journal.state, 'base64'));
    } catch {
      journal = undefined;
    }
  }
  if (!journal) {
    if (found) opts.warn?.(`${outPath}: the saved partial output is for another version of the archive or image; starting over`);
    await unlink(names.journal).catch(() => undefined);
    hasher.init();
    fh = await open(names.partial, 'w', 0o644);
    await fh.truncate(p.image.uncompressedSize);
  }
  const started = Date.now();
  const progress = opts.progress;
  progress?.begin(progressItem(p));
  const start = journal?.done ?? 0;
  if (start > 0) progress?.compressed(p.path, frames[start - 1]!.compressedOffset + frames[start - 1]!.compressedSize);
  let ok = false;
  let holes = 0;
  const unkeep = keepOnInterrupt(outPath, `${names.journal}.tmp`);
  const checkpoints = new Checkpoints(fh!, names.journal, identity);
  try {
    const report = await img.pump(
      p.image,
      {
        put: () => {
          throw new CosiError('COSI_ERR_INTERNAL', 'resumable fetch decoded outside the lanes');
        },
        writeTarget: () => ({ fd: fh.fd, position: 0, sparse: true, label: p.path, limit: p.image.uncompressedSize }),
        wrote: (r) => {
          holes += r.holes;
          if (r.bytes > 0) progress?.written(p.path, r.bytes);
        },
      },
      { progress, resume: { start, hasher, onCheckpoint: (done, state) => checkpoints.save(done, state) } },
    );
    await checkpoints.idle();
    await fh!.sync();
    await fh!.close();
    await rename(names.partial, outPath);
    await unlink(names.journal).catch(() => undefined);
    const dir = await open(dirname(outPath), 'r').catch(() => undefined);
    await dir?.sync().catch(() => undefined);
    await dir?.close().catch(() => undefined);
    ok = true;
    return {
      ...describe(p, outPath, 'file', 0, p.gptPartition?.size),
      shrunk: p.shrunk === true,
      grown: false,
      holeBytes: holes,
      verifiedAfter: false,
      seconds: (Date.now() - started) / 1000,
      ...report,
      resumedFrom: start,
    };
  } catch (err) {
    await checkpoints.idle().catch(() => undefined);
    await fh!.close().catch(() => undefined);
    // Bytes that are not the image's (integrity) or a stream that cannot be decoded (format) are nothing to continue.
    if (!isCosiError(err) || err.errorClass === 'integrity' || err.errorClass === 'format' || err.errorClass === 'internal') {
      await unlink(names.partial).catch(() => undefined);
      await unlink(names.journal).catch(() => undefined);
    }
    throw err;
  } finally {
    unkeep();
    progress?.end(p.path, ok);
  }
}

/** Journal writes, one at a time, each after the data it names is flushed; a newer checkpoint replaces a waiting one. */
class Checkpoints {
  private running: Promise<void> = Promise.resolve();
  private pending: { done: number; state: Uint8Array } | undefined;

  constructor(
    private readonly fh: FileHandle,
    private readonly path: string,
    private readonly identity: Identity,
  ) {}

  save(done: number, state: Uint8Array): void {
    const first = this.pending === undefined;
    this.pending = { done, state };
    if (first) this.running = this.running.then(() => this.flush());
  }

  idle(): Promise<void> {
    return this.running;
  }

  private async flush(): Promise<void> {
    const c = this.pending;
    this.pending = undefined;
    if (!c) return;
    await this.fh.datasync();
    const j: Journal = { v: JOURNAL_VERSION, ...this.identity, done: c.done, state: Buffer.from(c.state).toString('base64') };
    const tmp = `${this.path}.tmp`;
    await writeFile(tmp, JSON.stringify(j) + '\n');
    await rename(tmp, this.path);
  }
}
