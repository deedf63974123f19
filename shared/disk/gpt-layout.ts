/**
 * The on-disk layout of a GPT (UEFI 2.10 chapter 5) that both the reader
 * (gpt.ts) and the writers (gpt-build.ts) use: field offsets, the GUID byte
 * order, the protective MBR test, and the COSI_ERR_GPT failure.
 */

import { CosiError } from '../errors.js';

export const SIGNATURE = Buffer.from('EFI PART', 'latin1');
export const REVISION_1_0 = 0x00010000;
export const HEADER_SIZE = 92;
export const STD_ENTRIES = 128;
export const STD_ENTRY_SIZE = 128;
/** Far beyond any real table (the default is 16 KiB); bounds what a corrupt header can make us read. */
export const MAX_ENTRIES_BYTES = 32 * 1024 * 1024;
export const MBR_SIZE_MAX = 0xffffffff;

// Header field offsets.
export const H_SIG = 0;
export const H_REV = 8;
export const H_SIZE = 12;
export const H_CRC = 16;
export const H_RESERVED = 20;
export const H_MY_LBA = 24;
export const H_ALT_LBA = 32;
export const H_FIRST_USABLE = 40;
export const H_LAST_USABLE = 48;
export const H_DISK_GUID = 56;
export const H_ENTRIES_LBA = 72;
export const H_NUM_ENTRIES = 80;
export const H_ENTRY_SIZE = 84;
export const H_ENTRIES_CRC = 88;

// Entry field offsets.
export const E_TYPE = 0;
export const E_GUID = 16;
export const E_FIRST = 32;
export const E_LAST = 40;
export const E_ATTR = 48;
export const E_NAME = 56;
export const E_NAME_LEN = 72;

// Protective MBR.
export const MBR_PART_TABLE = 446;
export const MBR_SIG = 510;
export const MBR_TYPE_GPT = 0xee;

export function fail(message: string, details?: Record<string, unknown>): never {
  throw new CosiError('COSI_ERR_GPT', message, details === undefined ? undefined : { details });
}

export function asBuffer(buf: Uint8Array): Buffer {
  return Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
}

export function hex32(n: number): string {
  return n.toString(16).padStart(8, '0');
}

// ---------------------------------------------------------------------------
// GUIDs: the first three fields are stored little-endian, the last two as bytes.

export function decodeGuid(b: Uint8Array, off = 0): string {
  const h = (i: number): string => b[off + i]!.toString(16).padStart(2, '0');
  const r = (...idx: number[]): string => idx.map(h).join('');
  return `${r(3, 2, 1, 0)}-${r(5, 4)}-${r(7, 6)}-${r(8, 9)}-${r(10, 11, 12, 13, 14, 15)}`;
}

const GUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function encodeGuid(guid: string, out: Uint8Array, off = 0): void {
  if (!GUID_RE.test(guid)) fail(`invalid GUID "${guid}"`);
  const hex = guid.replace(/-/g, '');
  const byte = (i: number): number => parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  const order = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
  order.forEach((src, dst) => {
    out[off + dst] = byte(src);
  });
}

export function hasProtectiveMbr(b: Buffer): boolean {
  if (b.length < 512 || b[MBR_SIG] !== 0x55 || b[MBR_SIG + 1] !== 0xaa) return false;
  for (let i = 0; i < 4; i++) if (b[MBR_PART_TABLE + i * 16 + 4] === MBR_TYPE_GPT) return true;
  return false;
}
