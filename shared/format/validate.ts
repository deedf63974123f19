/**
 * Every MUST of the COSI spec that can be checked from metadata.json, the tar
 * index and (optionally) the parsed primary GPT. It works on `unknown` input
 * so it can report on documents parseMetadata would still accept and on ones
 * it would not; it never throws, and collects every issue instead of stopping
 * at the first, so a writer gets one complete report.
 *
 * Unknown fields are never reported: the spec requires readers to ignore
 * them, and fields a revision did not have yet count as unknown for it.
 */
import type { TarEntry } from './tar.js';
import type { Gpt } from '../disk/gpt.js';

export interface ValidationIssue {
  /** JSON path like 'disk.gptRegions[2].number', or 'tar[0]' for a tar entry. */
  field: string;
  /** Short stable id like 'sha384-format'. */
  rule: string;
  /** One line naming the field and the rule; starts with `field`. */
  message: string;
}

export interface ValidationResult {
  valid: boolean;
  version?: string;
  errors: ValidationIssue[];
  warnings: ValidationIssue[];
}

export interface ValidateInput {
  metadata: unknown;
  entries?: TarEntry[];
  gpt?: Gpt;
}

/** Latest minor revision of major 1 that we know; newer minors are validated as this one. */
const LATEST_MINOR = 2;
const ESP_TYPE = 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b';
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const SHA384_RE = /^[0-9a-f]{96}$/i;
const ARCHES = new Set(['x86_64', 'amd64', 'x64', 'arm64', 'aarch64']);
const ENTRY_TYPES = new Set(['uki-standalone', 'uki-config', 'config']);
const IMAGE_FIELDS = ['path', 'compressedSize', 'uncompressedSize', 'sha384'] as const;

type Obj = Record<string, unknown>;

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isSize(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** A short rendering of a bad value for messages; documents can be huge. */
function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** An image reference found in the metadata, kept for the tar and GPT checks. */
interface ImageRef {
  field: string;
  image: Obj & { path: string };
}

interface RegionRef {
  index: number;
  type: unknown;
  number?: number;
  image?: Obj & { path: string };
}

class Checker {
  readonly errors: ValidationIssue[] = [];
  readonly warnings: ValidationIssue[] = [];
  /** Minor revision the document is validated as. */
  minor = LATEST_MINOR;
  readonly images: ImageRef[] = [];
  regions: RegionRef[] | undefined;
  filesystems: { index: number; image?: Obj & { path: string }; verityImage?: Obj & { path: string }; partType?: string }[] = [];
  diskSize: number | undefined;
  lbaSize: number | undefined;

  error(field: string, rule: string, text: string): void {
    this.errors.push({ field, rule, message: `${field} ${text}` });
  }

  warn(field: string, rule: string, text: string): void {
    this.warnings.push({ field, rule, message: `${field} ${text}` });
  }

  since(minor: number): boolean {
    return this.minor >= minor;
  }

  /** Fetch a member that must be a string; reports 'required'/'type'. */
  str(o: Obj, key: string, field: string, required = true): string | undefined {
    const v = o[key];
    if (v === undefined) {
      if (required) this.error(field, 'required', 'is required');
      return undefined;
    }
    if (typeof v !== 'string') {
      this.error(field, 'type', `must be a string, got ${show(v)}`);
      return undefined;
    }
    return v;
  }

  obj(o: Obj, key: string, field: string, required = true): Obj | undefined {
    const v = o[key];
    if (v === undefined) {
      if (required) this.error(field, 'required', 'is required');
      return undefined;
    }
    if (!isObject(v)) {
      this.error(field, 'type', `must be an object, got ${show(v)}`);
      return undefined;
    }
    return v;
  }

  arr(o: Obj, key: string, field: string, required = true): unknown[] | undefined {
    const v = o[key];
    if (v === undefined) {
      if (required) this.error(field, 'required', 'is required');
      return undefined;
    }
    if (!Array.isArray(v)) {
      this.error(field, 'type', `must be an array, got ${show(v)}`);
      return undefined;
    }
    return v;
  }

  imageFile(o: Obj, key: string, field: string): (Obj & { path: string }) | undefined {
    const img = this.obj(o, key, field);
    if (!img) return undefined;
    const path = this.str(img, 'path', `${field}.path`);
    if (path !== undefined) this.imagePath(path, `${field}.path`);
    for (const k of ['compressedSize', 'uncompressedSize'] as const) {
      const v = img[k];
      if (v === undefined) this.error(`${field}.${k}`, 'required', 'is required');
      else if (!isSize(v)) this.error(`${field}.${k}`, 'size-integer', `must be a non-negative integer of at most 2^53-1, got ${show(v)}`);
    }
    const sha = img['sha384'];
    if (sha === undefined) {
      if (this.since(1)) this.error(`${field}.sha384`, 'required', 'is required since COSI 1.1');
    } else if (typeof sha !== 'string' || !SHA384_RE.test(sha)) {
      this.error(`${field}.sha384`, 'sha384-format', `must be 96 hexadecimal digits, got ${show(sha)}`);
    }
    if (path === undefined) return undefined;
    const ref = img as Obj & { path: string };
    this.images.push({ field, image: ref });
    return ref;
  }

  imagePath(path: string, field: string): void {
    if (path.startsWith('/') || path.startsWith('./')) {
      this.error(field, 'image-path', `must not start with './' or '/', got ${show(path)}`);
    } else if (!path.startsWith('images/') || path.length === 'images/'.length) {
      this.error(field, 'image-path', `must start with 'images/' and name a file, got ${show(path)}`);
    } else if (path.endsWith('/') || path.split('/').some((s) => s === '' || s === '.' || s === '..')) {
      this.error(field, 'image-path', `must be a plain relative file path (no empty, '.' or '..' segments), got ${show(path)}`);
    }
  }
}

function checkVersion(c: Checker, doc: Obj): { stop: boolean; version?: string } {
  const v = doc['version'];
  if (v === undefined) {
    c.error('version', 'required', 'is required');
    return { stop: false };
  }
  if (typeof v !== 'string') {
    c.error('version', 'version-format', `must be a string 'MAJOR.MINOR', got ${show(v)}`);
    return { stop: false };
  }
  const m = /^(0|[1-9]\d*)\.(0|[1-9]\d*)$/.exec(v);
  if (!m) {
    c.error('version', 'version-format', `must be 'MAJOR.MINOR', got ${show(v)}`);
    return { stop: false, version: v };
  }
  const major = Number(m[1]);
  const minor = Number(m[2]);
  if (major !== 1) {
    // Another major means other rules; checking it against 1.x would only produce noise.
    c.error('version', 'version-unsupported', `${show(v)} is not supported (only major version 1 is known)`);
    return { stop: true, version: v };
  }
  if (minor > LATEST_MINOR) {
    c.warn('version', 'version-newer', `${show(v)} is newer than 1.${LATEST_MINOR}; validated as 1.${LATEST_MINOR}`);
  }
  c.minor = Math.min(minor, LATEST_MINOR);
  return { stop: false, version: v };
}

function checkFilesystems(c: Checker, doc: Obj): void {
  const images = c.arr(doc, 'images', 'images');
  if (!images) return;
  const uuids = new Map<string, string>();
  images.forEach((fs, i) => {
    const field = `images[${i}]`;
    if (!isObject(fs)) {
      c.error(field, 'type', `must be a Filesystem object, got ${show(fs)}`);
      return;
    }
    const entry: Checker['filesystems'][number] = { index: i };
    c.filesystems.push(entry);
    entry.image = c.imageFile(fs, 'image', `${field}.image`);
    const mountPoint = c.str(fs, 'mountPoint', `${field}.mountPoint`);
    const fsType = c.str(fs, 'fsType', `${field}.fsType`);
    if (fsType === '') c.error(`${field}.fsType`, 'non-empty', 'must not be empty');
    const fsUuid = c.str(fs, 'fsUuid', `${field}.fsUuid`);
    if (fsUuid === '') c.error(`${field}.fsUuid`, 'non-empty', 'must not be empty');
    if (fsUuid) {
      const key = fsUuid.toLowerCase();
      const first = uuids.get(key);
      if (first !== undefined) c.error(`${field}.fsUuid`, 'fs-uuid-unique', `${show(fsUuid)} is already used by ${first}; filesystem UUIDs must be unique`);
      else uuids.set(key, field);
    }
    const partType = c.str(fs, 'partType', `${field}.partType`);
    if (partType !== undefined) {
      if (!UUID_RE.test(partType)) c.error(`${field}.partType`, 'part-type-uuid', `must be a UUID, got ${show(partType)}`);
      else entry.partType = partType.toLowerCase();
    }
    if (mountPoint === '/boot/efi' && entry.partType !== undefined && entry.partType !== ESP_TYPE) {
      c.warn(`${field}.partType`, 'esp-part-type', `is ${partType} but the filesystem mounted at /boot/efi looks like the ESP, whose type must be ${ESP_TYPE}`);
    }
    const verity = fs['verity'];
    if (verity !== undefined && verity !== null) {
      if (!isObject(verity)) {
        c.error(`${field}.verity`, 'verity-type', `must be a VerityConfig object or null, got ${show(verity)}`);
      } else {
        entry.verityImage = c.imageFile(verity, 'image', `${field}.verity.image`);
        c.str(verity, 'roothash', `${field}.verity.roothash`);
      }
    }
  });
}

function checkPackages(c: Checker, doc: Obj): void {
  const pkgs = c.arr(doc, 'osPackages', 'osPackages', c.since(1));
  if (!pkgs) return;
  pkgs.forEach((p, i) => {
    const field = `osPackages[${i}]`;
    if (!isObject(p)) {
      c.error(field, 'type', `must be an OsPackage object, got ${show(p)}`);
      return;
    }
    c.str(p, 'name', `${field}.name`);
    c.str(p, 'version', `${field}.version`);
    c.str(p, 'release', `${field}.release`, c.since(1));
    c.str(p, 'arch', `${field}.arch`, c.since(1));
  });
}

function checkBootloader(c: Checker, doc: Obj): void {
  if (!c.since(1)) return; // added in 1.1: an unknown field before that
  const bl = c.obj(doc, 'bootloader', 'bootloader');
  if (!bl) return;
  const type = c.str(bl, 'type', 'bootloader.type');
  if (type !== undefined && type !== 'grub' && type !== 'systemd-boot') {
    c.error('bootloader.type', 'bootloader-type', `must be 'grub' or 'systemd-boot', got ${show(type)}`);
  }
  const sdb = bl['systemdBoot'];
  const present = sdb !== undefined && sdb !== null;
  if (type === 'systemd-boot' && !present) {
    c.error('bootloader.systemdBoot', 'systemd-boot-required', `is required when bootloader.type is 'systemd-boot'`);
    return;
  }
  if (type !== undefined && type !== 'systemd-boot' && present) {
    c.error('bootloader.systemdBoot', 'systemd-boot-forbidden', `must be omitted or null when bootloader.type is ${show(type)}`);
    return;
  }
  if (!present) return;
  if (!isObject(sdb)) {
    c.error('bootloader.systemdBoot', 'type', `must be a SystemDBoot object, got ${show(sdb)}`);
    return;
  }
  const entries = c.arr(sdb, 'entries', 'bootloader.systemdBoot.entries');
  if (!entries) return;
  if (entries.length === 0) c.error('bootloader.systemdBoot.entries', 'systemd-boot-entries-empty', 'must list at least one entry');
  entries.forEach((e, i) => {
    const field = `bootloader.systemdBoot.entries[${i}]`;
    if (!isObject(e)) {
      c.error(field, 'type', `must be a SystemDBootEntry object, got ${show(e)}`);
      return;
    }
    const t = c.str(e, 'type', `${field}.type`);
    if (t !== undefined && !ENTRY_TYPES.has(t)) {
      c.error(`${field}.type`, 'systemd-boot-entry-type', `must be one of uki-standalone, uki-config, config; got ${show(t)}`);
    }
    c.str(e, 'path', `${field}.path`);
    c.str(e, 'cmdline', `${field}.cmdline`);
    c.str(e, 'kernel', `${field}.kernel`);
  });
}

function checkCompression(c: Checker, doc: Obj): void {
  if (!c.since(2)) return;
  const comp = c.obj(doc, 'compression', 'compression');
  if (!comp) return;
  const w = comp['maxWindowLog'];
  if (w === undefined) c.error('compression.maxWindowLog', 'required', 'is required');
  else if (typeof w !== 'number' || !Number.isInteger(w) || w < 10 || w > 31) {
    c.error('compression.maxWindowLog', 'max-window-log', `must be an integer from 10 to 31 (a zstd windowLog), got ${show(w)}`);
  }
}

function checkDisk(c: Checker, doc: Obj): void {
  if (!c.since(2)) return;
  const disk = c.obj(doc, 'disk', 'disk');
  if (!disk) return;
  const lba = disk['lbaSize'];
  if (lba === undefined) c.error('disk.lbaSize', 'required', 'is required');
  else if (lba !== 512 && lba !== 4096) c.error('disk.lbaSize', 'lba-size', `must be 512 or 4096, got ${show(lba)}`);
  else c.lbaSize = lba;
  const size = disk['size'];
  if (size === undefined) c.error('disk.size', 'required', 'is required');
  else if (!isSize(size)) c.error('disk.size', 'disk-size', `must be a non-negative integer of at most 2^53-1, got ${show(size)}`);
  else {
    c.diskSize = size;
    if (c.lbaSize !== undefined && size % c.lbaSize !== 0) {
      c.error('disk.size', 'disk-size-multiple', `${size} is not a multiple of disk.lbaSize (${c.lbaSize})`);
    }
  }
  const type = c.str(disk, 'type', 'disk.type');
  if (type !== undefined && type !== 'gpt') c.error('disk.type', 'disk-type', `must be 'gpt', got ${show(type)}`);
  if (type === 'gpt' && disk['gptRegions'] === undefined) {
    c.error('disk.gptRegions', 'gpt-regions-required', `is required when disk.type is 'gpt'`);
    return;
  }
  const regions = c.arr(disk, 'gptRegions', 'disk.gptRegions', false);
  if (!regions) return;
  checkRegions(c, regions);
}

function checkRegions(c: Checker, regions: unknown[]): void {
  const refs: RegionRef[] = [];
  const numbers = new Map<number, number>();
  const paths = new Map<string, number>();
  regions.forEach((r, i) => {
    const field = `disk.gptRegions[${i}]`;
    if (!isObject(r)) {
      c.error(field, 'type', `must be a GptDiskRegion object, got ${show(r)}`);
      return;
    }
    const ref: RegionRef = { index: i, type: r['type'] };
    const image = c.imageFile(r, 'image', `${field}.image`);
    if (image) {
      ref.image = image;
      const first = paths.get(image.path);
      if (first !== undefined) c.error(`${field}.image.path`, 'region-path-unique', `${show(image.path)} is already used by disk.gptRegions[${first}]`);
      else paths.set(image.path, i);
    }
    const type = c.str(r, 'type', `${field}.type`);
    if (type !== undefined && type !== 'primary-gpt' && type !== 'partition') {
      c.error(`${field}.type`, 'region-type', `must be 'primary-gpt' or 'partition', got ${show(type)}`);
    }
    if (type === 'partition') {
      const n = r['number'];
      if (n === undefined) c.error(`${field}.number`, 'region-number', 'is required for a partition region');
      else if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1) {
        c.error(`${field}.number`, 'region-number', `must be an integer >= 1 (a 1-based GPT entry index), got ${show(n)}`);
      } else {
        ref.number = n;
        const first = numbers.get(n);
        if (first !== undefined) c.error(`${field}.number`, 'region-number-unique', `${n} is already used by disk.gptRegions[${first}]`);
        else numbers.set(n, i);
      }
    }
    refs.push(ref);
  });
  c.regions = refs;

  const primaries = refs.filter((r) => r.type === 'primary-gpt');
  if (primaries.length !== 1) {
    c.error('disk.gptRegions', 'primary-gpt-count', `must contain exactly one 'primary-gpt' region, found ${primaries.length}`);
  } else if (primaries[0]!.index !== 0) {
    c.error(`disk.gptRegions[${primaries[0]!.index}].type`, 'primary-gpt-first', `is 'primary-gpt', but the primary-gpt region must be disk.gptRegions[0]`);
  }

  // A Filesystem (or verity image) that is also a partition region must describe the same file identically.
  const partitionImages = new Map<string, { field: string; image: Obj }>();
  for (const r of refs) if (r.type === 'partition' && r.image) partitionImages.set(r.image.path, { field: `disk.gptRegions[${r.index}].image`, image: r.image });
  for (const ref of c.images) {
    if (ref.field.startsWith('disk.')) continue;
    const region = partitionImages.get(ref.image.path);
    if (!region) continue;
    for (const k of IMAGE_FIELDS) {
      if (ref.image[k] !== region.image[k]) {
        c.error(`${ref.field}.${k}`, 'image-file-mismatch', `is ${show(ref.image[k])} but ${region.field}.${k} is ${show(region.image[k])}; they must be identical`);
      }
    }
  }
}

function checkUniqueImages(c: Checker): void {
  const seen = new Map<string, string>();
  for (const ref of c.images) {
    if (ref.field.startsWith('disk.')) continue;
    const first = seen.get(ref.image.path);
    if (first !== undefined) c.warn(`${ref.field}.path`, 'image-path-duplicate', `${show(ref.image.path)} is also used by ${first}`);
    else seen.set(ref.image.path, ref.field);
  }
}

function checkTar(c: Checker, entries: TarEntry[]): void {
  const names = new Map<string, number>();
  entries.forEach((e, i) => {
    if (e.name.startsWith('/') || e.name.startsWith('./')) {
      c.error(`tar[${i}]`, 'tar-name-leading', `name ${show(e.name)} must not start with './' or '/'`);
    }
    const first = names.get(e.name);
    if (first !== undefined) c.error(`tar[${i}]`, 'tar-path-unique', `name ${show(e.name)} is already used by tar[${first}]`);
    else names.set(e.name, i);
  });

  const first = entries[0];
  const markerFirst = first !== undefined && first.name === 'cosi-marker';
  if (c.since(2) || markerFirst) {
    if (!markerFirst || first.type !== 'file') {
      c.error('tar[0]', 'tar-marker-first', `must be a regular file named 'cosi-marker', got ${first ? `${first.type} ${show(first.name)}` : 'an empty archive'}`);
    } else if (first.size !== 0) {
      c.error('tar[0]', 'tar-marker-size', `'cosi-marker' must be empty, it is ${first.size} bytes`);
    }
  }

  const metaIndex = entries.findIndex((e) => e.name === 'metadata.json');
  if (metaIndex < 0) {
    c.error('tar', 'tar-metadata-missing', `has no 'metadata.json' at its root`);
  } else {
    if (entries[metaIndex]!.type !== 'file') c.error(`tar[${metaIndex}]`, 'tar-not-file', `'metadata.json' must be a regular file, it is a ${entries[metaIndex]!.type}`);
    const want = c.since(2) ? 1 : markerFirst ? 1 : 0;
    if (c.since(2) && metaIndex !== 1) {
      c.error(`tar[${metaIndex}]`, 'tar-metadata-second', `'metadata.json' must be the second entry, right after 'cosi-marker'`);
    } else if (metaIndex > want) {
      c.error(`tar[${want}]`, 'tar-extra-before-metadata', `${show(entries[want]!.name)} comes before 'metadata.json'; extra files must come after it`);
    }
  }

  const referenced = new Set<string>();
  for (const ref of c.images) {
    if (referenced.has(ref.image.path)) continue;
    referenced.add(ref.image.path);
    const i = names.get(ref.image.path);
    if (i === undefined) {
      c.error(`${ref.field}.path`, 'tar-image-missing', `${show(ref.image.path)} is not in the tar`);
      continue;
    }
    const e = entries[i]!;
    if (e.type !== 'file') {
      c.error(`tar[${i}]`, 'tar-not-file', `${show(e.name)} must be a regular file, it is a ${e.type}`);
      continue;
    }
    const want = ref.image['compressedSize'];
    if (isSize(want) && e.size !== want) {
      c.error(`tar[${i}]`, 'tar-image-size', `${show(e.name)} is ${e.size} bytes but ${ref.field}.compressedSize is ${want}`);
    }
  }

  if (c.regions) {
    const primary = c.regions.find((r) => r.type === 'primary-gpt');
    if (c.since(2) && metaIndex >= 0 && primary?.image) {
      const next = entries[metaIndex + 1];
      if (next?.name !== primary.image.path) {
        c.error(`tar[${metaIndex + 1}]`, 'tar-gpt-after-metadata', `must be the primary GPT image ${show(primary.image.path)} right after 'metadata.json', got ${next ? show(next.name) : 'the end of the archive'}`);
      }
    }
    // Region images must be laid out in the tar in physical disk order.
    let last = -1;
    let lastRegion = -1;
    for (const r of c.regions) {
      const i = r.image ? names.get(r.image.path) : undefined;
      if (i === undefined) continue;
      if (i < last) {
        c.error(`tar[${i}]`, 'tar-image-order', `${show(r.image!.path)} (disk.gptRegions[${r.index}]) comes before the image of disk.gptRegions[${lastRegion}]; tar order must follow disk order`);
        break;
      }
      last = i;
      lastRegion = r.index;
    }
  }

  entries.forEach((e, i) => {
    if (e.type === 'directory' || e.name === 'cosi-marker' || e.name === 'metadata.json' || referenced.has(e.name)) return;
    c.warn(`tar[${i}]`, 'tar-unknown-file', `${show(e.name)} is not referenced by the metadata and will be ignored`);
  });
}

function checkGpt(c: Checker, gpt: Gpt): void {
  if (c.lbaSize !== undefined && gpt.lbaSize !== c.lbaSize) {
    c.error('disk.lbaSize', 'gpt-lba-size', `is ${c.lbaSize} but the GPT uses ${gpt.lbaSize}-byte sectors`);
  }
  if (c.diskSize !== undefined) {
    const need = (gpt.backupLba + 1) * gpt.lbaSize;
    if (c.diskSize < need) c.error('disk.size', 'disk-size-too-small', `is ${c.diskSize} but the backup GPT header at LBA ${gpt.backupLba} needs at least ${need} bytes`);
  }
  if (!c.regions) return;
  let prevLba = -1;
  let prevIndex = -1;
  for (const r of c.regions) {
    const field = `disk.gptRegions[${r.index}]`;
    if (r.type === 'primary-gpt') {
      const size = r.image?.['uncompressedSize'];
      if (isSize(size) && size !== gpt.primaryRegionSize) {
        c.error(`${field}.image.uncompressedSize`, 'gpt-primary-size', `is ${size} but the primary GPT region (MBR, header and entries) is ${gpt.primaryRegionSize} bytes`);
      }
      continue;
    }
    if (r.type !== 'partition' || r.number === undefined) continue;
    const gp = gpt.partitions.find((p) => p.number === r.number);
    if (!gp) {
      c.error(`${field}.number`, 'gpt-partition-missing', `${r.number} is not a partition in the GPT`);
      continue;
    }
    if (gp.firstLba <= prevLba) {
      c.error(`${field}.number`, 'gpt-region-order', `partition ${r.number} starts at LBA ${gp.firstLba}, not after disk.gptRegions[${prevIndex}] (LBA ${prevLba}); regions must be in increasing start-LBA order`);
    }
    prevLba = gp.firstLba;
    prevIndex = r.index;
    const size = r.image?.['uncompressedSize'];
    if (isSize(size) && size > gp.size) {
      c.error(`${field}.image.uncompressedSize`, 'image-larger-than-partition', `is ${size} but partition ${r.number} is only ${gp.size} bytes`);
    }
    const fs = r.image ? c.filesystems.find((f) => f.image?.path === r.image!.path) : undefined;
    if (fs?.partType !== undefined && fs.partType !== gp.typeGuid.toLowerCase()) {
      c.warn(`images[${fs.index}].partType`, 'part-type-mismatch', `is ${fs.partType} but GPT partition ${r.number} has type ${gp.typeGuid}`);
    }
  }
}

function run(c: Checker, input: ValidateInput): string | undefined {
  const doc = input.metadata;
  if (!isObject(doc)) {
    c.error('metadata', 'metadata-object', `must be a JSON object, got ${show(doc)}`);
    return undefined;
  }
  const { stop, version } = checkVersion(c, doc);
  if (stop) return version;
  const arch = c.str(doc, 'osArch', 'osArch');
  if (arch !== undefined && !ARCHES.has(arch.toLowerCase())) {
    c.error('osArch', 'os-arch', `must be x86_64 or arm64 (or amd64, x64, aarch64; any case), got ${show(arch)}`);
  }
  c.str(doc, 'osRelease', 'osRelease');
  const id = doc['id'];
  if (id !== undefined && (typeof id !== 'string' || !UUID_RE.test(id))) c.error('id', 'id-uuid', `must be a UUID, got ${show(id)}`);
  checkFilesystems(c, doc);
  checkPackages(c, doc);
  checkBootloader(c, doc);
  checkCompression(c, doc);
  checkDisk(c, doc);
  checkUniqueImages(c);
  if (input.entries) checkTar(c, input.entries);
  if (input.gpt) checkGpt(c, input.gpt);
  return version;
}

/** Check a metadata document (and optionally its tar index and GPT) against the spec. Never throws. */
export function validateCosi(input: ValidateInput): ValidationResult {
  const c = new Checker();
  let version: string | undefined;
  try {
    version = run(c, input);
  } catch (err) {
    // A bug here must not hide the report gathered so far.
    c.error('metadata', 'internal', `could not be fully validated: ${err instanceof Error ? err.message : String(err)}`);
  }
  const result: ValidationResult = { valid: c.errors.length === 0, errors: c.errors, warnings: c.warnings };
  if (version !== undefined) result.version = version;
  return result;
}

/** One line per issue, errors first: 'error: disk.lbaSize: lba-size: must be 512 or 4096, got 1024'. */
export function formatIssues(result: ValidationResult): string[] {
  const line = (kind: string, i: ValidationIssue): string => {
    const text = i.message.startsWith(`${i.field} `) ? i.message.slice(i.field.length + 1) : i.message;
    return `${kind}: ${i.field}: ${i.rule}: ${text}`;
  };
  return [...result.errors.map((i) => line('error', i)), ...result.warnings.map((i) => line('warning', i))];
}
