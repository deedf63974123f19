#!/bin/sh
# Build the installer initramfs for network installs: busybox, the kernel
# modules for the disk and network (dependencies first, from modules.dep),
# this folder's init and install.sh, and either cosi-fetch (Node and the
# built dist/) or curl for install.sh's curl + dd fallback. Everything comes
# from the packages installed on this Debian host: busybox-static, a
# linux-image-* kernel (its modules must match the kernel iPXE boots), curl,
# gdisk, coreutils, and node for --cosi-fetch.
#
# usage: build-initramfs.sh -o OUT.img [-k KERNEL_VERSION] [-m "MODULE ..."]
#                           [--cosi-fetch REPO_DIR] [--level N]
#   -o FILE          the initramfs to write (newc cpio, zstd-compressed)
#   -k VERSION       kernel version under /lib/modules (default: the only one,
#                    or the newest *-amd64)
#   -m "MOD ..."     modules to add to the default virtio_pci virtio_net
#                    virtio_blk, e.g. "e1000e igb r8169 nvme ahci sd_mod"
#   --cosi-fetch DIR install cosi-fetch from the built checkout DIR (dist/,
#                    node_modules/) with this host's node; without it, curl
#   --level N        zstd level (default 3)
#
# Exit status: 2 usage, 7 a needed tool or file is missing, 6 io.

set -eu
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
die() {
	code=$1
	shift
	echo "build-initramfs: error: $*" >&2
	exit "$code"
}
have() { command -v "$1" >/dev/null 2>&1; }
PATH="$PATH:/usr/sbin:/sbin"

out='' kver='' extra='' repo='' level=3
while [ $# -gt 0 ]; do
	case $1 in
	-o) out=${2:?}; shift 2 ;;
	-k) kver=${2:?}; shift 2 ;;
	-m) extra=${2:?}; shift 2 ;;
	--cosi-fetch) repo=${2:?}; shift 2 ;;
	--level) level=${2:?}; shift 2 ;;
	-h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) die 2 "unknown argument $1 (see --help)" ;;
	esac
done
[ -n "$out" ] || die 2 "give the output file with -o"
for t in cpio zstd ldd; do have "$t" || die 7 "$t is not installed"; done
busybox=$(command -v busybox || true)
[ -n "$busybox" ] && ldd "$busybox" 2>&1 | grep -q 'not a dynamic' ||
	die 7 "a static busybox is needed: apt-get install busybox-static"

if [ -z "$kver" ]; then
	kver=$(ls /lib/modules 2>/dev/null | grep -- '-amd64$' | sort -V | tail -n 1 || true)
	[ -n "$kver" ] || kver=$(ls /lib/modules 2>/dev/null | sort -V | tail -n 1 || true)
fi
mods=/lib/modules/$kver
[ -n "$kver" ] && [ -f "$mods/modules.dep" ] || die 7 "no kernel modules for '${kver}': apt-get install linux-image-amd64"

stage=$(mktemp -d "${TMPDIR:-/tmp}/cosi-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT
trap 'exit 130' INT TERM
mkdir -p "$stage/bin" "$stage/sbin" "$stage/usr/bin" "$stage/usr/sbin" "$stage/etc" "$stage/lib/modules" "$stage/usr/local/bin" \
	"$stage/proc" "$stage/sys" "$stage/dev" "$stage/tmp" "$stage/run" "$stage/root"

# busybox and its applets (real binaries copied below win over the links).
cp "$busybox" "$stage/bin/busybox"
for applet in $("$busybox" --list); do
	[ -e "$stage/bin/$applet" ] || ln -s busybox "$stage/bin/$applet"
done

# A dynamic binary and every library it loads, at the same paths.
add_bin() { # PATH [NAME IN /usr/local/bin]
	src=$(command -v "$1" || true)
	[ -n "$src" ] || die 7 "$1 is not installed"
	dst="$stage/usr/local/bin/${2:-${src##*/}}"
	cp -L "$src" "$dst"
	ldd "$src" | sed -n 's#.*=> \(/[^ ]*\) .*#\1#p; s#^[[:space:]]*\(/[^ ]*\) (.*#\1#p' | while read -r lib; do
		mkdir -p "$stage${lib%/*}"
		[ -e "$stage$lib" ] || cp -L "$lib" "$stage$lib"
	done
}

# Modules, dependencies first: modules.dep lists a module's dependencies so
# that loading them from last to first satisfies each before its users.
modlist=$(printf '%s\n' virtio_pci virtio_net virtio_blk $extra | awk -v dep="$mods/modules.dep" '
	function norm(p,   b) { b = p; sub(/.*\//, "", b); sub(/\.ko(\.[a-z]+)?$/, "", b); gsub(/-/, "_", b); return b }
	function visit(p,   n, i, d) {
		if (p in seen) return
		seen[p] = 1
		n = split(deps[p], d, " ")
		for (i = n; i >= 1; i--) visit(d[i])
		print p
	}
	BEGIN {
		while ((getline line < dep) > 0) {
			k = line; sub(/:.*/, "", k); v = line; sub(/^[^:]*:[ ]*/, "", v)
			deps[k] = v; byname[norm(k)] = k
		}
	}
	{ m = $1; gsub(/-/, "_", m); if (m in byname) visit(byname[m]); else print "missing:" $1 }')
unknown=$(printf '%s\n' "$modlist" | sed -n 's/^missing://p' | tr '\n' ' ')
[ -z "$unknown" ] || die 7 "kernel $kver has no module named: $unknown"
: >"$stage/etc/cosi-modules"
for ko in $modlist; do
	mkdir -p "$stage/lib/modules/${ko%/*}"
	case $ko in
	*.ko) cp "$mods/$ko" "$stage/lib/modules/$ko"; name=$ko ;;
	*.ko.xz) name=${ko%.xz}; xz -dc "$mods/$ko" >"$stage/lib/modules/$name" ;;
	*.ko.zst) name=${ko%.zst}; zstd -qdc "$mods/$ko" >"$stage/lib/modules/$name" ;;
	*.ko.gz) name=${ko%.gz}; gzip -dc "$mods/$ko" >"$stage/lib/modules/$name" ;;
	*) die 7 "cannot read module $ko" ;;
	esac
	echo "$name" >>"$stage/etc/cosi-modules"
done

cp "$here/init" "$stage/init"
cp "$here/install.sh" "$stage/usr/local/bin/cosi-install"
cp "$here/udhcpc.script" "$stage/etc/udhcpc.script"
chmod 755 "$stage/init" "$stage/usr/local/bin/cosi-install" "$stage/etc/udhcpc.script"
add_bin sha384sum
add_bin sgdisk

if [ -n "$repo" ]; then
	[ -f "$repo/dist/client/cli.js" ] || die 7 "$repo/dist/client/cli.js is missing: build the checkout first (npm run build)"
	have node || die 7 "node is not installed"
	add_bin node
	app=/opt/cosi-stream
	mkdir -p "$stage$app/dist" "$stage$app/node_modules"
	cp "$repo/package.json" "$stage$app/"
	cp -R "$repo/dist/client" "$repo/dist/shared" "$stage$app/dist/"
	# The packages dist/client and dist/shared import, and theirs, as installed.
	node - "$repo" "$stage$app" <<'JS'
const { readFileSync, readdirSync, cpSync, existsSync } = require('node:fs');
const { join } = require('node:path');
const [repo, dst] = process.argv.slice(2);
// Static imports and exports, side-effect imports, import() and require(): bare package names only.
const BARE = `['"]((?:@[\\w.-]+\\/)?\\w[\\w./-]*)['"]`;
const IMPORT = new RegExp(`^\\s*(?:import|export)\\b[^'";]*?\\bfrom\\s*${BARE}|^\\s*import\\s*${BARE}|\\b(?:import|require)\\(\\s*${BARE}\\s*\\)`, 'gm');
const want = new Set();
const walk = (d) => { for (const e of readdirSync(d, { withFileTypes: true })) {
  const p = join(d, e.name);
  if (e.isDirectory()) walk(p);
  else if (p.endsWith('.js')) for (const m of readFileSync(p, 'utf8').matchAll(IMPORT)) {
    const spec = m[1] ?? m[2] ?? m[3];
    if (!spec.startsWith('node:')) want.add(spec.split('/').slice(0, spec.startsWith('@') ? 2 : 1).join('/'));
  } } };
walk(join(dst, 'dist'));
const done = new Set();
for (const name of want) {
  if (done.has(name)) continue;
  done.add(name);
  const src = join(repo, 'node_modules', name);
  if (!existsSync(join(src, 'package.json'))) throw new Error(`${name} is not installed in ${repo}/node_modules (npm ci)`);
  cpSync(src, join(dst, 'node_modules', name), { recursive: true, dereference: true });
  const pj = JSON.parse(readFileSync(join(src, 'package.json'), 'utf8'));
  for (const d of Object.keys({ ...pj.dependencies, ...pj.optionalDependencies })) if (existsSync(join(repo, 'node_modules', d))) want.add(d);
}
JS
	printf '#!/bin/sh\nexec node %s/dist/client/cli.js "$@"\n' "$app" >"$stage/usr/local/bin/cosi-fetch"
	chmod 755 "$stage/usr/local/bin/cosi-fetch"
else
	add_bin curl
fi

tmp_out="$out.tmp.$$"
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | zstd -q -"$level" -T0 >"$tmp_out" ||
	{ rm -f "$tmp_out"; die 6 "cannot write $out"; }
mv -f "$tmp_out" "$out"
echo "build-initramfs: $out: kernel $kver, $(wc -l <"$stage/etc/cosi-modules") modules, installer $(if [ -n "$repo" ]; then echo cosi-fetch; else echo curl; fi), $(wc -c <"$out") bytes"
