/**
 * The COSI metadata.json model (spec revisions 1.0, 1.1 and 1.2) and the
 * views the rest of the project needs over it: which images are partitions,
 * and which image files the tar must carry.
 *
 * Parsing here is deliberately shallow: it guarantees the object/array shape
 * that code dereferences, nothing more. Spec conformance is validate.ts's job,
 * so a reader can still inspect a document that breaks a MUST.
 */
import { CosiError } from '../errors.js';
import { dpsTypeByGuid } from '../disk/dps.js';
import type { Gpt, GptPartition } from '../disk/gpt.js';
import { formatBytes } from '../units.js';

/**
 * metadata.json is read into memory whole and parsed, so its size is capped
 * before a byte of it is read. Real documents are tens of KiB (a few hundred
 * bytes per package); a 4 MiB document of nothing but small keys takes about
 * 1 s and 55 MiB of heap to parse, a 52 MiB one 23 s and 510 MiB.
 * --max-metadata-size (every command) raises or lowers it.
 */
export const MAX_METADATA_BYTES = 4 * 1024 * 1024;

/** What --max-metadata-size accepts: past 1 GiB parsing alone would take many minutes and gigabytes. */
export const METADATA_SIZE_OPTION = { min: 1024, max: 1 << 30 } as const;

/** The one-line refusal of a metadata.json over the cap, the same from every command. */
export function metadataTooLarge(where: string, size: number, limit: number): CosiError {
  return new CosiError(
    'COSI_ERR_METADATA',
    `${where}metadata.json is ${formatBytes(size)} (${size} bytes), over the ${formatBytes(limit)} limit for metadata; if the file is trusted, raise the limit with --max-metadata-size`,
    { details: { size, limit } },
  );
}

export interface ImageFile {
  path: string;
  compressedSize: number;
  uncompressedSize: number;
  /** Required since 1.1. */
  sha384?: string;
}

export interface VerityConfig {
  image: ImageFile;
  roothash: string;
}

export interface Filesystem {
  image: ImageFile;
  mountPoint: string;
  fsType: string;
  fsUuid: string;
  partType: string;
  verity?: VerityConfig | null;
}

export interface OsPackage {
  name: string;
  version: string;
  /** Required since 1.1. */
  release?: string;
  /** Required since 1.1. */
  arch?: string;
}

export type SystemDBootEntryType = 'uki-standalone' | 'uki-config' | 'config';

export interface SystemDBootEntry {
  type: SystemDBootEntryType;
  path: string;
  cmdline: string;
  kernel: string;
}

export interface SystemDBoot {
  entries: SystemDBootEntry[];
}

export type BootloaderType = 'grub' | 'systemd-boot';

export interface Bootloader {
  type: BootloaderType;
  systemdBoot?: SystemDBoot | null;
}

export interface Compression {
  maxWindowLog: number;
}

export type GptRegionType = 'primary-gpt' | 'partition';

export interface GptDiskRegion {
  image: ImageFile;
  type: GptRegionType;
  /** 1-based GPT entry index; required when type is 'partition'. */
  number?: number;
}

export interface Disk {
  size: number;
  type: 'gpt';
  lbaSize: 512 | 4096;
  /** Required when type is 'gpt'; in physical disk order, primary-gpt first. */
  gptRegions?: GptDiskRegion[];
}

export type OsArch = 'x86_64' | 'arm64';

export interface CosiMetadata {
  version: string;
  /** Case-insensitive with aliases; see normalizeArch. */
  osArch: string;
  osRelease: string;
  images: Filesystem[];
  /** Required since 1.2. */
  disk?: Disk;
  /** Required since 1.1. */
  osPackages?: OsPackage[];
  /** Required since 1.1. */
  bootloader?: Bootloader;
  id?: string;
  /** Required since 1.2. */
  compression?: Compression;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function shapeError(field: string, want: string): CosiError {
  return new CosiError('COSI_ERR_METADATA', `metadata.json: ${field} must be ${want}`);
}

function checkImageFile(v: unknown, field: string): void {
  if (!isObject(v)) throw shapeError(field, 'an object');
  if (typeof v['path'] !== 'string') throw shapeError(`${field}.path`, 'a string');
}

/** Optional members: absent or null is fine, anything else must have the right container type. */
function checkOptional(root: Record<string, unknown>, key: string, want: 'object' | 'array'): void {
  const v = root[key];
  if (v === undefined || v === null) return;
  if (want === 'array' ? !Array.isArray(v) : !isObject(v)) throw shapeError(key, want === 'array' ? 'an array' : 'an object');
}

/**
 * Decode and parse metadata.json. Throws COSI_ERR_METADATA for anything that
 * cannot be handed to the rest of the code as a CosiMetadata; a document that
 * parses may still violate the spec (run validateCosi for that).
 */
export function parseMetadata(bytes: Uint8Array, maxBytes = MAX_METADATA_BYTES): CosiMetadata {
  if (bytes.length > maxBytes) throw metadataTooLarge('', bytes.length, maxBytes);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (cause) {
    throw new CosiError('COSI_ERR_METADATA', 'metadata.json is not valid UTF-8', { cause });
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (cause) {
    const why = (cause as Error).message.replace(/\s*\n\s*/g, ' ');
    throw new CosiError('COSI_ERR_METADATA', `metadata.json is not valid JSON: ${why}`, { cause });
  }
  if (!isObject(doc)) {
    const got = doc === null ? 'null' : Array.isArray(doc) ? 'an array' : typeof doc;
    throw new CosiError('COSI_ERR_METADATA', `metadata.json must contain a JSON object, got ${got}`);
  }
  if (typeof doc['version'] !== 'string') throw shapeError('version', 'a string');
  const images = doc['images'];
  if (!Array.isArray(images)) throw shapeError('images', 'an array');
  images.forEach((fs, i) => {
    const field = `images[${i}]`;
    if (!isObject(fs)) throw shapeError(field, 'an object');
    checkImageFile(fs['image'], `${field}.image`);
    const verity = fs['verity'];
    if (verity !== undefined && verity !== null) {
      if (!isObject(verity)) throw shapeError(`${field}.verity`, 'an object or null');
      checkImageFile(verity['image'], `${field}.verity.image`);
    }
  });
  checkOptional(doc, 'disk', 'object');
  checkOptional(doc, 'osPackages', 'array');
  checkOptional(doc, 'bootloader', 'object');
  checkOptional(doc, 'compression', 'object');
  const disk = doc['disk'];
  if (isObject(disk)) {
    checkOptional(disk, 'gptRegions', 'array');
    const regions = disk['gptRegions'];
    if (Array.isArray(regions)) {
      regions.forEach((r, i) => {
        if (!isObject(r)) throw shapeError(`disk.gptRegions[${i}]`, 'an object');
        checkImageFile(r['image'], `disk.gptRegions[${i}].image`);
      });
    }
  }
  const bootloader = doc['bootloader'];
  if (isObject(bootloader)) {
    const sdb = bootloader['systemdBoot'];
    if (sdb !== undefined && sdb !== null) {
      if (!isObject(sdb)) throw shapeError('bootloader.systemdBoot', 'an object or null');
      checkOptional(sdb, 'entries', 'array');
    }
  }
  // The shape the rest of the code touches has been checked above.
  return doc as unknown as CosiMetadata;
}

const ARCH_ALIASES: Readonly<Record<string, OsArch>> = {
  x86_64: 'x86_64',
  amd64: 'x86_64',
  x64: 'x86_64',
  arm64: 'arm64',
  aarch64: 'arm64',
};

/** The spec's OsArchitecture is case-insensitive and has aliases; map to the canonical name. */
export function normalizeArch(s: string): OsArch | undefined {
  return Object.hasOwn(ARCH_ALIASES, s.toLowerCase()) ? ARCH_ALIASES[s.toLowerCase()] : undefined;
}

/** What one partition image is and where it goes; the unit of selection and streaming. */
export interface PartitionInfo {
  path: string;
  image: ImageFile;
  /** GPT entry number (1-based), from disk.gptRegions; absent when the metadata does not place the image. */
  number?: number;
  role: 'filesystem' | 'verity-hash' | 'partition';
  mountPoint?: string;
  fsType?: string;
  fsUuid?: string;
  /** From the Filesystem object, or for a verity hash / bare region from the GPT entry when a Gpt is given. */
  partType?: string;
  /** DPS name for partType (dps.ts); for a verity hash without a known type, inferred from its data partition. */
  dpsName?: string;
  /** Path of the data image, for role 'verity-hash'. */
  verityOf?: string;
  gptPartition?: GptPartition;
  /** uncompressedSize < partition size, when the GPT is known (the spec's shrink detection). */
  shrunk?: boolean;
}

export function primaryGptRegion(meta: CosiMetadata): GptDiskRegion | undefined {
  return meta.disk?.gptRegions?.find((r) => r.type === 'primary-gpt');
}

function dpsNameOf(partType: string | undefined): string | undefined {
  return partType === undefined ? undefined : dpsTypeByGuid(partType)?.name;
}

/** root -> root-verity, usr -> usr-verity: DPS pairs a verity partition type with its data type. */
function verityDpsName(dataDpsName: string | undefined): string | undefined {
  return dataDpsName === 'root' || dataDpsName === 'usr' ? `${dataDpsName}-verity` : undefined;
}

function fromFilesystem(fs: Filesystem): PartitionInfo {
  return {
    path: fs.image.path,
    image: fs.image,
    role: 'filesystem',
    mountPoint: fs.mountPoint,
    fsType: fs.fsType,
    fsUuid: fs.fsUuid,
    partType: fs.partType,
    dpsName: dpsNameOf(fs.partType),
  };
}

function fromVerity(fs: Filesystem, verity: VerityConfig): PartitionInfo {
  return {
    path: verity.image.path,
    image: verity.image,
    role: 'verity-hash',
    verityOf: fs.image.path,
    dpsName: verityDpsName(dpsNameOf(fs.partType)),
  };
}

/** Fill in what only the partition table knows. */
function joinGpt(p: PartitionInfo, gpt: Gpt | undefined): PartitionInfo {
  if (!gpt || p.number === undefined) return p;
  const gp = gpt.partitions.find((g) => g.number === p.number);
  if (!gp) return p;
  const out: PartitionInfo = { ...p, gptPartition: gp, shrunk: p.image.uncompressedSize < gp.size };
  if (out.partType === undefined) {
    out.partType = gp.typeGuid;
    out.dpsName = dpsNameOf(gp.typeGuid) ?? out.dpsName;
  }
  return out;
}

/**
 * Every image that is a partition. For 1.2, the partition regions in disk
 * order, joined by path with their Filesystem (or verity config); images the
 * metadata describes but does not place in gptRegions follow, without a
 * number, so they can still be selected. For 1.0/1.1 (no disk), every
 * filesystem image and every verity image, in metadata order.
 */
export function listPartitions(meta: CosiMetadata, gpt?: Gpt): PartitionInfo[] {
  const described = new Map<string, PartitionInfo>();
  for (const fs of meta.images) {
    if (!described.has(fs.image.path)) described.set(fs.image.path, fromFilesystem(fs));
    if (fs.verity && !described.has(fs.verity.image.path)) described.set(fs.verity.image.path, fromVerity(fs, fs.verity));
  }
  const regions = meta.disk?.gptRegions;
  if (!regions) return [...described.values()];

  const out: PartitionInfo[] = [];
  const placed = new Set<string>();
  for (const region of regions) {
    if (region.type !== 'partition' || placed.has(region.image.path)) continue;
    placed.add(region.image.path);
    const known = described.get(region.image.path);
    // The region's ImageFile is authoritative for the disk; validate.ts reports any disagreement.
    const base: PartitionInfo = known ? { ...known, image: region.image } : { path: region.image.path, image: region.image, role: 'partition' };
    if (typeof region.number === 'number') base.number = region.number;
    out.push(joinGpt(base, gpt));
  }
  for (const [path, p] of described) if (!placed.has(path)) out.push(p);
  return out;
}

/** Every distinct image file the metadata references: GPT region, partitions, filesystems, verity images. */
export function allImageFiles(meta: CosiMetadata): ImageFile[] {
  const seen = new Map<string, ImageFile>();
  const add = (img: ImageFile): void => {
    if (!seen.has(img.path)) seen.set(img.path, img);
  };
  for (const r of meta.disk?.gptRegions ?? []) add(r.image);
  for (const fs of meta.images) {
    add(fs.image);
    if (fs.verity) add(fs.verity.image);
  }
  return [...seen.values()];
}
