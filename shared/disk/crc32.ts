import * as zlib from 'node:zlib';

/**
 * CRC-32 (IEEE 802.3, reflected, poly 0xEDB88320) as used by GPT and zip.
 * Node >= 20.15 ships a native one in zlib; older runtimes get a table version.
 * `seed` is a previous result, so crc32(b, crc32(a)) === crc32(a ++ b).
 */

type NativeCrc32 = (data: Uint8Array, value?: number) => number;

const native: NativeCrc32 | undefined =
  typeof (zlib as { crc32?: unknown }).crc32 === 'function' ? (zlib as { crc32: NativeCrc32 }).crc32 : undefined;

let table: Uint32Array | undefined;

function makeTable(): Uint32Array {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
}

/** Table implementation; exported so tests can compare it with the native one. */
export function crc32Table(buf: Uint8Array, seed = 0): number {
  table ??= makeTable();
  let c = ~seed >>> 0;
  for (let i = 0; i < buf.length; i++) c = table[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

export function crc32(buf: Uint8Array, seed = 0): number {
  return native !== undefined ? native(buf, seed) >>> 0 : crc32Table(buf, seed);
}
