import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DPS_TYPES, dpsTypeByGuid, dpsTypesByName, dpsNames, rootTypeFor, canonicalArch } from '../shared/disk/dps.js';
import { parseGpt } from '../shared/disk/gpt.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cosi-dps-test-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('known GUIDs map to the right type', () => {
  const cases: Array<[string, string, string | undefined, string | undefined]> = [
    ['c12a7328-f81f-11d2-ba4b-00a0c93ec93b', 'esp', undefined, '/boot/efi'],
    ['bc13c2ff-59e6-4262-a352-b275fd6f7172', 'xbootldr', undefined, '/boot'],
    ['0657fd6d-a4ab-43c4-84e5-0933c84b4f4f', 'swap', undefined, undefined],
    ['933ac7e1-2eb4-4f13-b844-0e14e2aef915', 'home', undefined, '/home'],
    ['3b8f8425-20e0-4f3b-907f-1a25a76f98e8', 'srv', undefined, '/srv'],
    ['4d21b016-b534-45c2-a9fb-5c16e091fd2d', 'var', undefined, '/var'],
    ['7ec6f557-3bc5-4aca-b293-16ef5df639d1', 'tmp', undefined, '/var/tmp'],
    ['0fc63daf-8483-4772-8e79-3d69d8477de4', 'linux-generic', undefined, undefined],
    ['4f68bce3-e8cd-4db1-96e7-fbcaf984b709', 'root', 'x86_64', '/'],
    ['8484680c-9521-48c6-9c11-b0720656f69e', 'usr', 'x86_64', '/usr'],
    ['2c7357ed-ebd2-46d9-aec1-23d437ec2bf5', 'root-verity', 'x86_64', undefined],
    ['77ff5f63-e7b6-4633-acf4-1565b864c0e6', 'usr-verity', 'x86_64', undefined],
    ['b921b045-1df0-41c3-af44-4c6f280d3fae', 'root', 'arm64', '/'],
    ['b0e01050-ee5f-4390-949a-9101b17104e9', 'usr', 'arm64', '/usr'],
    ['df3300ce-d69f-4c92-978c-9bfb0f38d820', 'root-verity', 'arm64', undefined],
    ['6e11a4e7-fbca-4ded-b9e9-e1a512bb664e', 'usr-verity', 'arm64', undefined],
  ];
  for (const [guid, name, arch, mountPoint] of cases) {
    const t = dpsTypeByGuid(guid);
    assert.ok(t, guid);
    assert.equal(t.name, name, guid);
    assert.equal(t.arch, arch, guid);
    assert.equal(t.mountPoint, mountPoint, guid);
    assert.ok(t.description.length > 0);
    assert.equal(dpsTypeByGuid(guid.toUpperCase()), t, 'lookup is case-insensitive');
  }
  assert.equal(dpsTypeByGuid('00000000-0000-0000-0000-000000000000'), undefined);
  assert.equal(dpsTypeByGuid('21686148-6449-6e6f-744e-656564454649'), undefined, 'BIOS boot is not a DPS type');
});

test('table is well formed: canonical lowercase GUIDs, no duplicates', () => {
  const seen = new Set<string>();
  for (const t of DPS_TYPES) {
    assert.match(t.guid, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.ok(!seen.has(t.guid), `duplicate GUID ${t.guid}`);
    seen.add(t.guid);
  }
  const combos = new Set(DPS_TYPES.map((t) => `${t.name}/${t.arch ?? ''}`));
  assert.equal(combos.size, DPS_TYPES.length, 'one GUID per (name, arch)');
  assert.ok(Object.isFrozen(DPS_TYPES));
});

test('names and architectures resolve', () => {
  assert.deepEqual(
    [...dpsNames()].sort(),
    ['esp', 'home', 'linux-generic', 'root', 'root-verity', 'root-verity-sig', 'srv', 'swap', 'tmp', 'usr', 'usr-verity', 'usr-verity-sig', 'var', 'xbootldr'],
  );
  assert.deepEqual(dpsTypesByName('esp').map((t) => t.guid), ['c12a7328-f81f-11d2-ba4b-00a0c93ec93b']);
  const roots = dpsTypesByName('root');
  assert.ok(roots.length >= 5);
  for (const a of ['x86_64', 'arm64', 'x86', 'arm', 'riscv64']) assert.ok(roots.some((t) => t.arch === a), a);
  assert.deepEqual(dpsTypesByName('root', 'aarch64').map((t) => t.guid), ['b921b045-1df0-41c3-af44-4c6f280d3fae']);
  assert.deepEqual(dpsTypesByName('usr-verity-sig', 'x86_64').map((t) => t.guid), ['e7bb33fb-06cf-4e81-8273-e543b413e2e2']);
  assert.deepEqual(dpsTypesByName('nope'), []);

  assert.equal(rootTypeFor('x86_64', 'root')?.guid, '4f68bce3-e8cd-4db1-96e7-fbcaf984b709');
  assert.equal(rootTypeFor('amd64', 'usr')?.guid, '8484680c-9521-48c6-9c11-b0720656f69e');
  assert.equal(rootTypeFor('x64', 'root-verity')?.guid, '2c7357ed-ebd2-46d9-aec1-23d437ec2bf5');
  assert.equal(rootTypeFor('aarch64', 'usr-verity')?.guid, '6e11a4e7-fbca-4ded-b9e9-e1a512bb664e');
  assert.equal(rootTypeFor('ARM64', 'root')?.guid, 'b921b045-1df0-41c3-af44-4c6f280d3fae');
  assert.equal(rootTypeFor('i686', 'root')?.guid, '44479540-f297-41b2-9af7-d131d5f0458a');
  assert.equal(rootTypeFor('riscv64', 'root')?.guid, '72ec70a6-cf74-40e6-bd49-4bda08e8f224');
  assert.equal(rootTypeFor('sparc', 'root'), undefined);
  assert.equal(canonicalArch('AMD64'), 'x86_64');
});

test('sgdisk type codes map to the expected DPS types', () => {
  const img = path.join(tmp, 'codes.img');
  fs.writeFileSync(img, '');
  fs.truncateSync(img, 32 * 1024 * 1024);
  const codes: Array<[string, string, string | undefined]> = [
    ['ef00', 'esp', undefined],
    ['8304', 'root', 'x86_64'],
    ['8306', 'srv', undefined],
    ['8300', 'linux-generic', undefined],
    ['8200', 'swap', undefined],
  ];
  const args: string[] = [];
  codes.forEach(([code], i) => args.push('-n', `${i + 1}:0:+1M`, '-t', `${i + 1}:${code}`));
  execFileSync('sgdisk', [...args, img], { stdio: 'ignore' });
  const region = Buffer.alloc(17408);
  const fd = fs.openSync(img, 'r');
  fs.readSync(fd, region, 0, region.length, 0);
  fs.closeSync(fd);
  const gpt = parseGpt(region);
  assert.equal(gpt.partitions.length, codes.length);
  gpt.partitions.forEach((p, i) => {
    const t = dpsTypeByGuid(p.typeGuid);
    assert.ok(t, `${codes[i]![0]} -> ${p.typeGuid}`);
    assert.equal(t.name, codes[i]![1]);
    assert.equal(t.arch, codes[i]![2]);
  });
});

/** systemd-id128 names arches its own way; map them to ours. */
const SYSTEMD_ARCH: Record<string, string> = {
  'x86-64': 'x86_64',
  'mips-le': 'mipsel',
  'mips64-le': 'mips64el',
  'ppc64-le': 'ppc64le',
};

test('every entry agrees with systemd-id128 show (when available)', (t) => {
  const r = spawnSync('systemd-id128', ['show'], { encoding: 'utf8' });
  if (r.status !== 0) {
    t.skip('systemd-id128 not available');
    return;
  }
  const known = new Map<string, string>();
  for (const line of r.stdout.split('\n').slice(1)) {
    const [name, id] = line.trim().split(/\s+/);
    if (name && id && /^[0-9a-f]{32}$/.test(id)) known.set(name, id);
  }
  let checked = 0;
  for (const type of DPS_TYPES) {
    let key: string = type.name;
    if (type.arch !== undefined) {
      const sysArch = Object.entries(SYSTEMD_ARCH).find(([, ours]) => ours === type.arch)?.[0] ?? type.arch;
      key = type.name.replace(/^(root|usr)/, `$1-${sysArch}`);
    }
    const id = known.get(key);
    if (id === undefined) continue; // older systemd without this arch
    assert.equal(type.guid.replace(/-/g, ''), id, key);
    checked++;
  }
  t.diagnostic(`${checked} of ${DPS_TYPES.length} entries checked against systemd-id128`);
  assert.ok(checked >= 8 + 6 * 2, `only ${checked} entries could be checked`);
});
