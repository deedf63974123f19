/**
 * `cosi-pack reframe`: any COSI in, the same COSI out with each partition
 * image re-encoded as independent frames and a seek table (or back to one
 * frame). Every source image is hashed against its SHA-384 while it is
 * decoded; the output gets fresh hashes, sizes and maxWindowLog, and keeps
 * the rest of metadata.json as it was (unknown fields included).
 *
 * One image at a time is decoded to a temporary file beside the output (the
 * encoder reads frames from a file), so the extra disk space is the largest
 * uncompressed image; written to a temporary name and renamed, as pack does.
 */
import { open, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { systemError } from '../errno.js';
import { FileSource } from '../transport/file-source.js';
import { checkArchive, entryFor, refuseInvalid, windowLogOf } from '../format/check.js';
import { decodeImage } from '../format/deep.js';
import { allImageFiles, type CosiMetadata, type ImageFile } from '../format/metadata.js';
import { compressFile } from '../zstd/index.js';
import { writeArchive } from './pack.js';
import { partialPathFor, renameInto, workDirFor } from './output.js';

export interface ReframeOptions {
  input: string;
  output: string;
  /** Uncompressed bytes per frame; absent writes one frame per image and no seek table. */
  frameSize?: number;
  level?: number;
  windowLog?: number;
  log?: (line: string) => void;
}

export interface ReframeResult {
  metadata: CosiMetadata;
  size: number;
  images: number;
  /** An existing file at `output` was replaced (the same rule as pack's). */
  replaced: boolean;
}

const PRIMARY_GPT = 'primary-gpt';

export async function reframe(opts: ReframeOptions): Promise<ReframeResult> {
  const log = opts.log ?? (() => {});
  const src = new FileSource(opts.input);
  const work = await workDirFor(opts.output, 'reframe');
  const tmpOut = partialPathFor(opts.output);
  try {
    const check = await checkArchive(src);
    refuseInvalid(opts.input, check.result, check.gptFailure);
    const { archive } = check;
    const maxWindowLog = windowLogOf(archive.metadata);
    const primaryPath = archive.metadata.disk?.gptRegions?.find((r) => r.type === PRIMARY_GPT)?.image.path;
    const idBytes = Buffer.from(archive.metadata.id?.replace(/-/g, '') ?? '', 'hex');
    const fresh = new Map<string, { image: ImageFile; file: string; windowLog: number }>();
    for (const image of allImageFiles(archive.metadata)) {
      const entry = entryFor(archive, image.path)!;
      const raw = join(work, 'raw');
      const packed = join(work, `${fresh.size}.zst`);
      log(`${image.path}: decoding ${image.uncompressedSize} bytes`);
      const fh = await open(raw, 'w');
      try {
        // Checked as validate --deep checks: the hash, and a seek table against its frames.
        await decodeImage(src, entry, image as ImageFile & { uncompressedSize: number }, maxWindowLog, async (chunk) => void (await fh.write(chunk)));
      } finally {
        await fh.close();
      }
      const framed = image.path === primaryPath ? undefined : opts.frameSize;
      const r = await compressFile(raw, packed, {
        level: opts.level,
        windowLog: opts.windowLog,
        skippableId: idBytes.length === 16 ? idBytes : undefined,
        frameSize: framed,
      });
      await rm(raw, { force: true });
      log(`${image.path}: ${r.frames} frame(s), ${entry.size} -> ${r.compressedSize} bytes`);
      fresh.set(image.path, { image: { ...image, compressedSize: r.compressedSize, sha384: r.sha384 }, file: packed, windowLog: r.windowLog });
    }
    const metadata = withImages(archive.metadata, fresh);
    const ordered = archive.index.entries.filter((e) => fresh.has(e.name)).map((e) => fresh.get(e.name)!);
    const bytes = Buffer.from(JSON.stringify(metadata, null, 2) + '\n');
    await writeArchive(tmpOut, bytes, ordered.map((f) => ({ name: f.image.path, file: f.file, size: f.image.compressedSize })));
    const replaced = await renameInto(tmpOut, opts.output);
    return { metadata, size: (await stat(opts.output)).size, images: fresh.size, replaced };
  } catch (err) {
    await rm(tmpOut, { force: true });
    throw systemError(`cannot reframe ${opts.input} into ${opts.output}`, err);
  } finally {
    await src.close();
    await rm(work, { recursive: true, force: true });
  }
}

/** The source metadata with every image object's sizes and hash replaced, and a window limit covering every new frame. */
function withImages(meta: CosiMetadata, fresh: Map<string, { image: ImageFile; windowLog: number }>): CosiMetadata {
  const copy = structuredClone(meta);
  const update = (img: ImageFile) => {
    const f = fresh.get(img.path);
    if (f) Object.assign(img, { compressedSize: f.image.compressedSize, sha384: f.image.sha384 });
  };
  for (const r of copy.disk?.gptRegions ?? []) update(r.image);
  for (const fs of copy.images) {
    update(fs.image);
    if (fs.verity) update(fs.verity.image);
  }
  const windows = [...fresh.values()].map((f) => f.windowLog);
  copy.compression = { ...copy.compression, maxWindowLog: Math.max(...windows) };
  return copy;
}
