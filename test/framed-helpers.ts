/**
 * Framed-image variants for the tests: a packed archive's root image changed
 * (a flipped byte, a seek table that lies) and written back with tar-stream,
 * its hash recomputed when the writer is to blame.
 */
import { join } from 'node:path';
import { imageFiles, readParts, sha384, writeParts, type Parts } from './mutants.js';

/** The frame size the framed fixtures are packed with. */
export const FRAME = 1 << 20;

/** The root image's path in an archive's metadata. */
export function rootPath(meta: Parts['meta']): string {
  return meta.images.find((f: { mountPoint: string }) => f.mountPoint === '/').image.path as string;
}

/** An archive like `from` with its root image's entry replaced; the SHA-384 vouches for the change when `rehash`. */
export async function mutateRoot(from: string, dir: string, change: (data: Buffer, parts: Parts) => Buffer, rehash: boolean): Promise<string> {
  const parts = await readParts(from);
  const root = rootPath(parts.meta);
  const m = parts.images.find((i) => i.name === root)!;
  m.data = change(Buffer.from(m.data), parts);
  for (const img of imageFiles(parts.meta, root)) {
    img.compressedSize = m.data.length;
    if (rehash) img.sha384 = sha384(m.data);
  }
  const out = join(dir, 'bad.cosi');
  await writeParts(out, parts);
  return out;
}

/** The table's entries as the writer made them (no checksums), and the data before the table. */
export function tableOf(data: Buffer): { body: Buffer; entries: Array<{ compressedSize: number; decompressedSize: number }> } {
  const count = data.readUInt32LE(data.length - 9);
  const start = data.length - (8 + count * 8 + 9);
  const entries = [];
  for (let i = 0; i < count; i++) entries.push({ compressedSize: data.readUInt32LE(start + 8 + i * 8), decompressedSize: data.readUInt32LE(start + 12 + i * 8) });
  return { body: data.subarray(0, start), entries };
}

/** One byte flipped in the middle of the second zstd frame (the hash is left alone: corruption). */
export function flipInFrame(d: Buffer): Buffer {
  const t = tableOf(d);
  const at = t.entries[0]!.compressedSize + t.entries[1]!.compressedSize + Math.floor(t.entries[2]!.compressedSize / 2);
  d[at] ^= 0x5a;
  return d;
}
