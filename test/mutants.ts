/**
 * Hand-made variants of a real COSI archive for the strictness tests: the
 * members of a packed fixture read into memory, then written back, changed,
 * by tar-stream (another tar writer than ours), so metadata, member order,
 * duplicates, extension headers and the end-of-archive marker can each be
 * broken on purpose.
 */
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import tar from 'tar-stream';
import { FileSource } from '../shared/transport/file-source.js';
import { packedDisk, SMALL, type PackedFixture } from './fixtures.js';
import { readTarIndex } from '../shared/format/tar.js';

export interface Member {
  name: string;
  data: Buffer;
  type?: 'file' | 'directory';
  /** PAX records for this member's extended header (tar-stream writes one when given). */
  pax?: Record<string, string>;
}

/** A COSI archive as parts: its metadata document (to change freely) and every member after metadata.json. */
export interface Parts {
  meta: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- mutations poke anywhere
  images: Member[];
}

export async function readParts(cosi: string): Promise<Parts> {
  const src = new FileSource(cosi);
  try {
    const index = await readTarIndex(src);
    const members: Member[] = [];
    for (const e of index.entries) members.push({ name: e.name, data: await src.read(e.dataOffset, e.size) });
    const [marker, metadata, ...images] = members;
    if (marker?.name !== 'cosi-marker' || metadata?.name !== 'metadata.json') throw new Error(`${cosi} does not start with cosi-marker, metadata.json`);
    return { meta: JSON.parse(metadata.data.toString('utf8')), images };
  } finally {
    await src.close();
  }
}

export interface TarOptions {
  /** Bytes of metadata.json instead of the JSON of `meta` (not JSON, or padded). */
  metadataBytes?: Buffer;
  /** An extended header before cosi-marker (so the file does not start with "cosi-marker"). */
  paxMarker?: boolean;
  /** Members between metadata.json and the images. */
  afterMetadata?: Member[];
  /** Zero blocks at the end: 2 is right, 1 is a broken end-of-archive marker. */
  endBlocks?: 1 | 2;
}

/** cosi-marker, metadata.json, the images, each as given; returns the bytes written. */
export async function writeParts(path: string, parts: Parts, opts: TarOptions = {}): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => void chunks.push(c as Buffer));
  const ended = new Promise<void>((resolve, reject) => {
    pack.on('end', () => resolve());
    pack.on('error', reject);
  });
  const add = (m: Member) =>
    new Promise<void>((resolve, reject) => {
      const header = { name: m.name, size: m.type === 'directory' ? 0 : m.data.length, mode: 0o400, uid: 0, gid: 0, mtime: new Date(0), type: m.type ?? 'file', pax: m.pax };
      const done = (err?: Error | null) => (err ? reject(err) : resolve());
      if (m.type === 'directory') pack.entry(header, done);
      else pack.entry(header, m.data, done);
    });
  await add({ name: 'cosi-marker', data: Buffer.alloc(0), pax: opts.paxMarker ? { comment: 'an extension header first' } : undefined });
  await add({ name: 'metadata.json', data: opts.metadataBytes ?? Buffer.from(JSON.stringify(parts.meta)) });
  for (const m of opts.afterMetadata ?? []) await add(m);
  for (const m of parts.images) await add(m);
  pack.finalize();
  await ended;
  let bytes = Buffer.concat(chunks);
  // tar-stream ends with two zero blocks; cut one for a broken marker.
  if (opts.endBlocks === 1) bytes = bytes.subarray(0, bytes.length - 512);
  await writeFile(path, bytes);
  return bytes;
}

export function sha384(b: Buffer): string {
  return createHash('sha384').update(b).digest('hex');
}

/** Every ImageFile object in the metadata that describes `path` (the region's and the filesystem's). */
export function imageFiles(meta: Parts['meta'], path: string): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const r of meta.disk?.gptRegions ?? []) if (r.image?.path === path) out.push(r.image);
  for (const f of meta.images ?? []) {
    if (f.image?.path === path) out.push(f.image);
    if (f.verity?.image?.path === path) out.push(f.verity.image);
  }
  return out;
}

/** The standard small fixture as parts, with the paths of its root (partition 2) and /srv (partition 3) images. */
export interface SmallParts {
  fx: PackedFixture;
  base: Parts;
  rootPath: string;
  srvPath: string;
}

export async function smallParts(): Promise<SmallParts> {
  const fx = await packedDisk(SMALL);
  const base = await readParts(fx.cosi);
  const path = (n: number): string => base.meta.disk.gptRegions.find((r: { number?: number }) => r.number === n).image.path;
  return { fx, base, rootPath: path(2), srvPath: path(3) };
}
