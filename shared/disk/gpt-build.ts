/**
 * Writing GPTs: the backup GPT for a target disk rebuilt from the primary
 * region a COSI file carries (the size may differ from the source disk), and
 * fresh tables with a protective MBR for synthetic disks.
 */

import { randomUUID } from 'node:crypto';
import { crc32 } from './crc32.js';
import { parseGpt, parseHeader, type LbaSize } from './gpt.js';
import {
  E_ATTR, E_FIRST, E_GUID, E_LAST, E_NAME, E_NAME_LEN, E_TYPE,
  H_ALT_LBA, H_CRC, H_DISK_GUID, H_ENTRIES_CRC, H_ENTRIES_LBA, H_ENTRY_SIZE, H_FIRST_USABLE, H_LAST_USABLE, H_MY_LBA,
  H_NUM_ENTRIES, H_REV, H_SIG, H_SIZE, HEADER_SIZE, MBR_PART_TABLE, MBR_SIG, MBR_SIZE_MAX, MBR_TYPE_GPT,
  REVISION_1_0, SIGNATURE, STD_ENTRIES, STD_ENTRY_SIZE,
  asBuffer, encodeGuid, fail, hasProtectiveMbr,
} from './gpt-layout.js';

export interface BackupGpt {
  /** One LBA: the backup header, zero padded. */
  header: Buffer;
  headerOffset: number;
  /** The entry array, zero padded to whole LBAs. */
  entries: Buffer;
  entriesOffset: number;
  /** The primary region to write at offset 0 (a copy; rewritten when the disk size differs). */
  primary: Buffer;
}

function sealHeader(b: Buffer, base: number, headerSize: number): void {
  b.writeUInt32LE(0, base + H_CRC);
  b.writeUInt32LE(crc32(b.subarray(base, base + headerSize)), base + H_CRC);
}

/**
 * The backup GPT for a target disk of `diskSize` bytes, from the verbatim
 * primary region of the source disk. When the target's size differs from the
 * source's, the primary header is adjusted too, so both copies agree.
 */
export function buildBackupGpt(primaryRegion: Uint8Array, diskSize: number): BackupGpt {
  const src = asBuffer(primaryRegion);
  const gpt = parseGpt(src);
  const { lbaSize } = gpt;
  const h = parseHeader(src, lbaSize);
  if (!Number.isSafeInteger(diskSize) || diskSize <= 0) fail(`invalid target disk size ${diskSize}`);

  const entriesBytes = gpt.numEntries * gpt.entrySize;
  const entrySectors = Math.ceil(entriesBytes / lbaSize);
  const lastLba = Math.floor(diskSize / lbaSize) - 1;
  const backupEntriesLba = lastLba - entrySectors;

  const primary = Buffer.from(src.subarray(0, gpt.primaryRegionSize));
  if (lastLba !== gpt.backupLba) {
    const lastUsable = backupEntriesLba - 1;
    const maxEnd = gpt.partitions.reduce((m, p) => Math.max(m, p.lastLba), gpt.firstUsableLba - 1);
    if (maxEnd > lastUsable || lastUsable < gpt.firstUsableLba) {
      fail(
        `target disk of ${diskSize} bytes is too small: partitions end at LBA ${maxEnd}, ` +
          `but the last usable LBA would be ${lastUsable} (needs at least ${(maxEnd + entrySectors + 2) * lbaSize} bytes)`,
      );
    }
    primary.writeBigUInt64LE(BigInt(lastLba), lbaSize + H_ALT_LBA);
    primary.writeBigUInt64LE(BigInt(lastUsable), lbaSize + H_LAST_USABLE);
    sealHeader(primary, lbaSize, h.headerSize);
    updateProtectiveSize(primary, lastLba);
  }

  const header = Buffer.alloc(lbaSize);
  primary.copy(header, 0, lbaSize, lbaSize + h.headerSize);
  header.writeBigUInt64LE(BigInt(lastLba), H_MY_LBA);
  header.writeBigUInt64LE(1n, H_ALT_LBA);
  header.writeBigUInt64LE(BigInt(backupEntriesLba), H_ENTRIES_LBA);
  sealHeader(header, 0, h.headerSize);

  const entries = Buffer.alloc(entrySectors * lbaSize);
  const entriesOff = gpt.entriesLba * lbaSize;
  primary.copy(entries, 0, entriesOff, entriesOff + entriesBytes);

  return {
    header,
    headerOffset: lastLba * lbaSize,
    entries,
    entriesOffset: backupEntriesLba * lbaSize,
    primary,
  };
}

/** The 0xEE record spans LBA 1 to the end of the disk, capped at what 32 bits can say. */
function updateProtectiveSize(b: Buffer, lastLba: number): void {
  if (!hasProtectiveMbr(b)) return;
  for (let i = 0; i < 4; i++) {
    const rec = MBR_PART_TABLE + i * 16;
    if (b[rec + 4] === MBR_TYPE_GPT && b.readUInt32LE(rec + 8) === 1) {
      b.writeUInt32LE(Math.min(lastLba, MBR_SIZE_MAX), rec + 12);
    }
  }
}

// ---------------------------------------------------------------------------
// Fresh GPT

export interface NewGptPartition {
  firstLba: number;
  lastLba: number;
  typeGuid: string;
  partGuid?: string;
  name?: string;
  attributes?: bigint;
}

export interface BuiltGptDisk {
  /** Protective MBR + primary header + entries, to write at offset 0. */
  primary: Buffer;
  backupHeader: Buffer;
  backupHeaderOffset: number;
  backupEntries: Buffer;
  backupEntriesOffset: number;
}

/** A fresh GPT with the usual 128 x 128-byte entry array right after the header. */
export function buildGptDisk(opts: {
  diskSize: number;
  lbaSize: LbaSize;
  diskGuid?: string;
  partitions: NewGptPartition[];
}): BuiltGptDisk {
  const { diskSize, lbaSize } = opts;
  if (lbaSize !== 512 && lbaSize !== 4096) fail(`unsupported LBA size ${String(lbaSize)} (expected 512 or 4096)`);
  if (opts.partitions.length > STD_ENTRIES) fail(`${opts.partitions.length} partitions do not fit in ${STD_ENTRIES} GPT entries`);
  if (!Number.isSafeInteger(diskSize) || diskSize <= 0) fail(`invalid disk size ${diskSize}`);

  const entriesBytes = STD_ENTRIES * STD_ENTRY_SIZE;
  const entrySectors = Math.ceil(entriesBytes / lbaSize);
  const entriesLba = 2;
  const firstUsable = entriesLba + entrySectors;
  const lastLba = Math.floor(diskSize / lbaSize) - 1;
  const lastUsable = lastLba - entrySectors - 1;
  if (lastUsable < firstUsable) fail(`disk of ${diskSize} bytes is too small for a GPT with ${lbaSize}-byte LBAs`);

  const primary = Buffer.alloc(entriesLba * lbaSize + entriesBytes);

  // Protective MBR: one 0xEE record from LBA 1 to the end of the disk.
  const rec = MBR_PART_TABLE;
  primary.set([0x00, 0x00, 0x02, 0x00, MBR_TYPE_GPT, 0xff, 0xff, 0xff], rec);
  primary.writeUInt32LE(1, rec + 8);
  primary.writeUInt32LE(Math.min(lastLba, MBR_SIZE_MAX), rec + 12);
  primary[MBR_SIG] = 0x55;
  primary[MBR_SIG + 1] = 0xaa;

  const entries = primary.subarray(entriesLba * lbaSize);
  opts.partitions.forEach((p, i) => {
    const off = i * STD_ENTRY_SIZE;
    const n = i + 1;
    if (!Number.isSafeInteger(p.firstLba) || !Number.isSafeInteger(p.lastLba) || p.firstLba > p.lastLba) {
      fail(`partition ${n}: invalid LBA range ${p.firstLba}..${p.lastLba}`);
    }
    if (p.firstLba < firstUsable || p.lastLba > lastUsable) {
      fail(`partition ${n} (LBA ${p.firstLba}..${p.lastLba}) is outside the usable area ${firstUsable}..${lastUsable}`);
    }
    if (/^0{8}-0{4}-0{4}-0{4}-0{12}$/.test(p.typeGuid)) fail(`partition ${n}: the all-zero type GUID marks an unused entry`);
    encodeGuid(p.typeGuid, entries, off + E_TYPE);
    encodeGuid(p.partGuid ?? randomUUID(), entries, off + E_GUID);
    entries.writeBigUInt64LE(BigInt(p.firstLba), off + E_FIRST);
    entries.writeBigUInt64LE(BigInt(p.lastLba), off + E_LAST);
    entries.writeBigUInt64LE(BigInt.asUintN(64, p.attributes ?? 0n), off + E_ATTR);
    const name = Buffer.from(p.name ?? '', 'utf16le');
    if (name.length > E_NAME_LEN) fail(`partition ${n}: name "${p.name}" is longer than 36 UTF-16 code units`);
    name.copy(entries, off + E_NAME);
  });

  const hdr = primary.subarray(lbaSize, lbaSize + HEADER_SIZE);
  SIGNATURE.copy(hdr, H_SIG);
  hdr.writeUInt32LE(REVISION_1_0, H_REV);
  hdr.writeUInt32LE(HEADER_SIZE, H_SIZE);
  hdr.writeBigUInt64LE(1n, H_MY_LBA);
  hdr.writeBigUInt64LE(BigInt(lastLba), H_ALT_LBA);
  hdr.writeBigUInt64LE(BigInt(firstUsable), H_FIRST_USABLE);
  hdr.writeBigUInt64LE(BigInt(lastUsable), H_LAST_USABLE);
  encodeGuid(opts.diskGuid ?? randomUUID(), hdr, H_DISK_GUID);
  hdr.writeBigUInt64LE(BigInt(entriesLba), H_ENTRIES_LBA);
  hdr.writeUInt32LE(STD_ENTRIES, H_NUM_ENTRIES);
  hdr.writeUInt32LE(STD_ENTRY_SIZE, H_ENTRY_SIZE);
  hdr.writeUInt32LE(crc32(entries), H_ENTRIES_CRC);
  sealHeader(primary, lbaSize, HEADER_SIZE);

  // Validates the result too: overlaps and the like surface here as COSI_ERR_GPT.
  const backup = buildBackupGpt(primary, diskSize);
  return {
    primary: backup.primary,
    backupHeader: backup.header,
    backupHeaderOffset: backup.headerOffset,
    backupEntries: backup.entries,
    backupEntriesOffset: backup.entriesOffset,
  };
}
