/**
 * The metadata.json rules of the COSI spec, revision by revision: version,
 * top-level fields, filesystems, packages, bootloader, compression and the
 * disk's GPT regions. What they find (images, regions, geometry) is kept on
 * the Checker for the tar and GPT rules in validate-layout.ts.
 */
import { LATEST_MINOR, isObject, isSize, show, type Checker, type FilesystemRef, type ImageObj, type Obj, type RegionRef } from './validate-checker.js';

const ESP_TYPE = 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b';
export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const SHA384_RE = /^[0-9a-f]{96}$/i;
const ARCHES = new Set(['x86_64', 'amd64', 'x64', 'arm64', 'aarch64']);
const ENTRY_TYPES = new Set(['uki-standalone', 'uki-config', 'config']);
const IMAGE_FIELDS = ['path', 'compressedSize', 'uncompressedSize', 'sha384'] as const;

/** An image file object: path, sizes and (since 1.1) sha384; remembered on the Checker when it has a path. */
function imageFile(c: Checker, o: Obj, key: string, field: string): ImageObj | undefined {
  const img = c.obj(o, key, field);
  if (!img) return undefined;
  const path = c.str(img, 'path', `${field}.path`);
  if (path !== undefined) imagePath(c, path, `${field}.path`);
  for (const k of ['compressedSize', 'uncompressedSize'] as const) {
    const v = c.need(img, k, `${field}.${k}`);
    if (v !== undefined && !isSize(v)) c.error(`${field}.${k}`, 'size-integer', `must be a non-negative integer of at most 2^53-1, got ${show(v)}`);
  }
  const sha = img['sha384'];
  if (sha === undefined) {
    if (c.since(1)) c.error(`${field}.sha384`, 'required', 'is required since COSI 1.1');
  } else if (typeof sha !== 'string' || !SHA384_RE.test(sha)) {
    c.error(`${field}.sha384`, 'sha384-format', `must be 96 hexadecimal digits, got ${show(sha)}`);
  }
  if (path === undefined) return undefined;
  const ref = img as ImageObj;
  c.images.push({ field, image: ref });
  return ref;
}

function imagePath(c: Checker, path: string, field: string): void {
  if (path.startsWith('/') || path.startsWith('./')) {
    c.error(field, 'image-path', `must not start with './' or '/', got ${show(path)}`);
  } else if (!path.startsWith('images/') || path.length === 'images/'.length) {
    c.error(field, 'image-path', `must start with 'images/' and name a file, got ${show(path)}`);
  } else if (path.endsWith('/') || path.split('/').some((s) => s === '' || s === '.' || s === '..')) {
    c.error(field, 'image-path', `must be a plain relative file path (no empty, '.' or '..' segments), got ${show(path)}`);
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

/** Root fields by the minor revision that added them (the spec's "Added in" column, beyond 1.0). */
const ADDED_IN: ReadonlyArray<readonly [string, number]> = [
  ['bootloader', 1],
  ['disk', 2],
  ['compression', 2],
];

/**
 * A document that uses fields a later revision added declares too old a
 * version: a reader following the declared one would ignore them (disk
 * layout, window limit), so the writer must declare the revision it follows.
 */
function checkLaterFields(c: Checker, doc: Obj, declared: string): void {
  const minor = Number(declared.split('.')[1]);
  const later = ADDED_IN.filter(([key, since]) => since > minor && doc[key] !== undefined && doc[key] !== null);
  if (later.length === 0) return;
  const need = Math.max(...later.map(([, since]) => since));
  const names = later.map(([key, since]) => `'${key}' (added in 1.${since})`).join(', ');
  c.writerError('version', 'version-too-old', `is ${show(declared)} but the document has ${names}: it must declare version 1.${need} or later`);
}

function checkFilesystems(c: Checker, doc: Obj): void {
  const images = c.arr(doc, 'images', 'images');
  if (!images) return;
  const uuids = new Map<string, string>();
  c.eachObject(images, 'images', 'a Filesystem object', (fs, field, i) => {
    const entry: FilesystemRef = { index: i };
    c.filesystems.push(entry);
    entry.image = imageFile(c, fs, 'image', `${field}.image`);
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
        entry.verityImage = imageFile(c, verity, 'image', `${field}.verity.image`);
        c.str(verity, 'roothash', `${field}.verity.roothash`);
      }
    }
  });
}

function checkPackages(c: Checker, doc: Obj): void {
  const pkgs = c.arr(doc, 'osPackages', 'osPackages', c.since(1));
  if (!pkgs) return;
  c.eachObject(pkgs, 'osPackages', 'an OsPackage object', (p, field) => {
    c.str(p, 'name', `${field}.name`);
    c.str(p, 'version', `${field}.version`);
    c.str(p, 'release', `${field}.release`, c.since(1));
    c.str(p, 'arch', `${field}.arch`, c.since(1));
  });
}

function checkBootloader(c: Checker, doc: Obj): void {
  const bl = c.section(doc, 'bootloader', 1);
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
  c.eachObject(entries, 'bootloader.systemdBoot.entries', 'a SystemDBootEntry object', (e, field) => {
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
  const comp = c.section(doc, 'compression', 2);
  if (!comp) return;
  const w = c.need(comp, 'maxWindowLog', 'compression.maxWindowLog');
  if (w !== undefined && (typeof w !== 'number' || !Number.isInteger(w) || w < 10 || w > 31)) {
    c.error('compression.maxWindowLog', 'max-window-log', `must be an integer from 10 to 31 (a zstd windowLog), got ${show(w)}`);
  }
}

function checkDisk(c: Checker, doc: Obj): void {
  const disk = c.section(doc, 'disk', 2);
  if (!disk) return;
  const lba = c.need(disk, 'lbaSize', 'disk.lbaSize');
  if (lba === 512 || lba === 4096) c.lbaSize = lba;
  else if (lba !== undefined) c.error('disk.lbaSize', 'lba-size', `must be 512 or 4096, got ${show(lba)}`);
  const size = c.need(disk, 'size', 'disk.size');
  if (isSize(size)) {
    c.diskSize = size;
    if (c.lbaSize !== undefined && size % c.lbaSize !== 0) {
      c.error('disk.size', 'disk-size-multiple', `${size} is not a multiple of disk.lbaSize (${c.lbaSize})`);
    }
  } else if (size !== undefined) {
    c.error('disk.size', 'disk-size', `must be a non-negative integer of at most 2^53-1, got ${show(size)}`);
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
  c.eachObject(regions, 'disk.gptRegions', 'a GptDiskRegion object', (r, field, i) => {
    const ref: RegionRef = { index: i, type: r['type'] };
    const image = imageFile(c, r, 'image', `${field}.image`);
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

/**
 * Every metadata rule, in report order. Returns the version string when there
 * is one; `stop` when the rest is not worth checking (another major version).
 */
export function checkMetadata(c: Checker, doc: Obj): { stop: boolean; version?: string } {
  const checked = checkVersion(c, doc);
  if (checked.stop) return checked;
  if (checked.version !== undefined && /^1\.\d+$/.test(checked.version)) checkLaterFields(c, doc, checked.version);
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
  return checked;
}
