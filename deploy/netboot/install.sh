#!/bin/sh
# Example initramfs installer: write a COSI image to a disk at boot.
#
# Kernel command line (from iPXE, see boot.ipxe.example):
#   cosi.url=URL        the .cosi archive, e.g. http://host:8080/cosi/myos.cosi
#   cosi.disk=DEV       the target block device (a regular file works too)
#   cosi.sha384=HEX     optional: pin metadata.json (refused on mismatch)
#   cosi.mirror=URL     optional, repeatable: other copies of the archive
#   cosi.plan=URL       optional: the install plan for the curl + dd path when
#                       cosi.url is not a cosi-server /cosi/ URL
#
# With cosi-fetch on PATH, it streams the whole disk (GPT, partitions, backup
# GPT; hashes checked while writing). Without it, the fallback needs only a
# POSIX sh, curl, dd, sed and grep: cosi-server's install plan names each
# region's disk offset and a URL serving its decompressed bytes (the server
# checks the image's SHA-384 before it sends the last chunk, and cuts the
# connection on a mismatch); the primary GPT goes last, and the backup GPT is
# rebuilt with sgdisk or sfdisk when either is present.
#
# Plan format (text/plain, GET <server>/v1/images/<id>/plan.txt):
#   cosi-plan 1
#   metadata <sha384 of metadata.json> <url of metadata.json>
#   disk <disk.size bytes> <lba size>
#   region <primary-gpt|partition number> <disk offset> <bytes> <sha384 of compressed image> <url of decompressed bytes>
# URLs are absolute (http...), origin-relative (/...) or relative to the plan.
#
# Exit status as cosi-fetch's: 2 usage, 3 network, 4 integrity, 5 format,
# 6 io, 7 a needed tool is missing.
#
# CMDLINE_FILE overrides /proc/cmdline (for tests and dry runs).

set -eu
set -f # cmdline words are data: a '?' or '*' in a URL must not glob

log() { echo "cosi-install: $*" >&2; }
die() {
	code=$1
	shift
	log "error: $*"
	exit "$code"
}
have() { command -v "$1" >/dev/null 2>&1; }

url='' disk='' pin='' plan='' mirrors=''
# shellcheck disable=SC2013 # the command line is one line of words
for word in $(cat "${CMDLINE_FILE:-/proc/cmdline}"); do
	case $word in
	cosi.url=*) url=${word#cosi.url=} ;;
	cosi.disk=*) disk=${word#cosi.disk=} ;;
	cosi.sha384=*) pin=${word#cosi.sha384=} ;;
	cosi.mirror=*) mirrors="$mirrors ${word#cosi.mirror=}" ;;
	cosi.plan=*) plan=${word#cosi.plan=} ;;
	esac
done

[ -n "$url" ] || die 2 "no cosi.url= on the kernel command line"
[ -n "$disk" ] || die 2 "no cosi.disk= on the kernel command line"
if [ -n "$pin" ]; then
	pin=$(printf '%s' "$pin" | tr 'A-F' 'a-f')
	case $pin in
	*[!0-9a-f]*) die 2 "cosi.sha384 must be 96 hex digits" ;;
	esac
	[ ${#pin} -eq 96 ] || die 2 "cosi.sha384 must be 96 hex digits"
fi

if have cosi-fetch; then
	set -- --disk -o "$disk"
	if [ -n "$pin" ]; then set -- "$@" --metadata-sha384 "$pin"; fi
	for m in $mirrors; do set -- "$@" --mirror "$m"; done
	log "streaming $url to $disk with cosi-fetch"
	exec cosi-fetch "$@" "$url"
fi

# ---- Fallback: curl + dd over the server's decompressing endpoints. ----

have curl || die 7 "neither cosi-fetch nor curl is available"
have dd || die 7 "dd is not available"
[ -z "$mirrors" ] || log "warning: cosi.mirror is used by cosi-fetch only; the fallback uses cosi.url"

origin=$(printf '%s\n' "$url" | sed -n 's#^\(https\{0,1\}://[^/]*\).*#\1#p')
[ -n "$origin" ] || die 2 "cosi.url must be an http(s) URL: $url"
if [ -z "$plan" ]; then
	case $url in
	*/cosi/*.cosi)
		base=${url%%/cosi/*}
		id=${url#"$base"/cosi/}
		id=${id%.cosi}
		plan="$base/v1/images/$id/plan.txt"
		;;
	*) die 2 "cosi.url is not a cosi-server /cosi/<id>.cosi URL; give cosi.plan= for the fallback" ;;
	esac
fi

# The one temporary directory; removed on every exit.
tmp="${TMPDIR:-/tmp}/cosi-install.$$"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# Absolute URL, origin-relative path, or relative to the plan's directory.
resolve() {
	case $1 in
	http://* | https://*) printf '%s\n' "$1" ;;
	/*) printf '%s%s\n' "$origin" "$1" ;;
	*) printf '%s/%s\n' "${plan%/*}" "$1" ;;
	esac
}

fetch_small() { # URL FILE
	curl -fsSL --retry 5 --retry-delay 2 --connect-timeout 20 -o "$2" "$1" || die 3 "cannot fetch $1"
}

sha384_of() {
	if have sha384sum; then
		sha384sum "$1" | sed 's/ .*//'
	elif have openssl; then
		openssl dgst -sha384 -r "$1" | sed 's/ .*//'
	fi
}

log "fetching the install plan $plan"
fetch_small "$plan" "$tmp/plan.txt"

meta_sha='' meta_url='' disk_size=''
: >"$tmp/regions"
: >"$tmp/gpt"
line_no=0
while read -r kind a b c d e; do
	line_no=$((line_no + 1))
	if [ "$line_no" -eq 1 ]; then
		[ "$kind $a" = "cosi-plan 1" ] || die 5 "$plan is not a version 1 install plan"
		continue
	fi
	case $kind in
	metadata) meta_sha=$a meta_url=$b ;;
	disk) disk_size=$a ;;
	region)
		case $a in
		primary-gpt | [1-9] | [1-9][0-9] | [1-9][0-9][0-9]) ;;
		*) die 5 "bad region name '$a' on line $line_no of the install plan" ;;
		esac
		case "$b.$c" in
		*[!0-9.]* | .* | *.) die 5 "bad offset or size on line $line_no of the install plan" ;;
		esac
		[ -n "$e" ] || die 5 "line $line_no of the install plan has no URL"
		# The protective MBR and primary GPT go last: an interrupted install
		# must not leave a disk that looks partitioned and complete.
		if [ "$a" = primary-gpt ]; then
			echo "$a $b $c $d $e" >>"$tmp/gpt"
		else
			echo "$a $b $c $d $e" >>"$tmp/regions"
		fi
		;;
	*) ;; # unknown lines: room for later plan versions
	esac
done <"$tmp/plan.txt"
[ "$line_no" -gt 0 ] || die 5 "the install plan $plan is empty"
[ -n "$disk_size" ] || die 5 "the install plan has no disk line"
[ -s "$tmp/gpt" ] || die 5 "the install plan has no primary-gpt region"
case $disk_size in *[!0-9]*) die 5 "bad disk size in the install plan" ;; esac

if [ -n "$pin" ]; then
	have sha384sum || have openssl || die 7 "cosi.sha384 is set but neither sha384sum nor openssl is available to check it"
	# Tie the plan to the pinned image: metadata.json must hash to the pin,
	# and every region's image hash must be one that metadata.json lists.
	[ -n "$meta_url" ] || die 5 "the install plan has no metadata line to check cosi.sha384 against"
	fetch_small "$(resolve "$meta_url")" "$tmp/metadata.json"
	got=$(sha384_of "$tmp/metadata.json")
	[ "$got" = "$pin" ] || die 4 "metadata.json has SHA-384 $got, not the pinned $pin"
	[ "$meta_sha" = "$pin" ] || die 4 "the install plan is for metadata $meta_sha, not the pinned $pin"
	while read -r _ _ _ sha _; do
		grep -qi "\"$sha\"" "$tmp/metadata.json" || die 4 "the install plan names image $sha, which the pinned metadata.json does not list"
	done <"$tmp/regions"
	read -r _ _ _ sha _ <"$tmp/gpt"
	grep -qi "\"$sha\"" "$tmp/metadata.json" || die 4 "the install plan names image $sha, which the pinned metadata.json does not list"
fi

size_of() { # bytes in a regular file or block device, empty if unknown
	if [ -b "$1" ]; then
		if have blockdev; then blockdev --getsize64 "$1"; else
			n=$(cat "/sys/class/block/${1##*/}/size" 2>/dev/null) && echo $((n * 512))
		fi
	elif [ -f "$1" ]; then
		stat -c %s "$1" 2>/dev/null || wc -c <"$1"
	fi
}

if [ -b "$disk" ]; then
	if grep -q "^$disk[^ ]* " /proc/mounts 2>/dev/null; then die 6 "$disk is mounted"; fi
	have_size=$(size_of "$disk")
	[ -n "$have_size" ] || die 6 "cannot tell the size of $disk"
	[ "$have_size" -ge "$disk_size" ] || die 6 "$disk has $have_size bytes; the image needs $disk_size"
elif [ -e "$disk" ] && [ ! -f "$disk" ]; then
	die 6 "$disk is neither a block device nor a regular file"
else
	# A disk image file: give it the disk's size so the backup GPT lands at its end.
	have_size=$(size_of "$disk")
	if [ -z "$have_size" ] || [ "$have_size" -lt "$disk_size" ]; then
		if have truncate; then truncate -s "$disk_size" "$disk"; else
			dd if=/dev/zero of="$disk" bs=1 count=0 seek="$disk_size" 2>/dev/null
		fi || die 6 "cannot size $disk to $disk_size bytes"
	fi
fi

# The largest of 1 MiB, 4 KiB, 512 that divides the offset, for dd's seek.
block_for() {
	for bs in 1048576 4096 512 1; do
		if [ $(($1 % bs)) -eq 0 ]; then
			echo "$bs"
			return
		fi
	done
}

write_region() { # LABEL OFFSET BYTES SHA URL
	src=$(resolve "$5")
	bs=$(block_for "$2")
	log "writing $1: $3 bytes at offset $2"
	# No pipefail in POSIX sh: curl's status travels through a file.
	rm -f "$tmp/curl.rc"
	{
		rc=0
		curl -fsSL --connect-timeout 20 --speed-time 60 --speed-limit 1 "$src" </dev/null || rc=$?
		echo "$rc" >"$tmp/curl.rc"
	} | dd of="$disk" bs="$bs" seek=$(($2 / bs)) conv=notrunc,fsync 2>"$tmp/dd.err" ||
		die 6 "dd failed writing $1 to $disk: $(tail -n 1 "$tmp/dd.err")"
	rc=$(cat "$tmp/curl.rc" 2>/dev/null || echo 1)
	# An aborted connection is how the server reports a hash mismatch.
	[ "$rc" -eq 0 ] || die 3 "download of $1 failed or was cut short (curl exit $rc): $src"
	# GNU dd and most busybox builds report "N bytes ... copied"; a busybox
	# without that line leaves the check to curl (Content-Length, status).
	wrote=$(sed -n 's/^\([0-9][0-9]*\) bytes.*/\1/p' "$tmp/dd.err" | tail -n 1)
	if [ -z "$wrote" ]; then
		[ -n "${dd_quiet:-}" ] || log "note: this dd reports no byte counts (busybox): curl's Content-Length check stands alone"
		dd_quiet=1
	elif [ "$wrote" != "$3" ]; then
		die 4 "$1: wrote $wrote bytes, expected $3"
	fi
}

while read -r label off bytes sha src; do
	write_region "partition $label" "$off" "$bytes" "$sha" "$src"
done <"$tmp/regions"
read -r label off bytes sha src <"$tmp/gpt"
write_region "$label" "$off" "$bytes" "$sha" "$src"

# The image holds only the primary GPT; the backup belongs at the end of
# this disk, whose size may differ from the source disk's.
if have sgdisk; then
	sgdisk -e "$disk" >"$tmp/gpt.log" 2>&1 || die 5 "sgdisk could not write the backup GPT: $(tail -n 1 "$tmp/gpt.log")"
elif have sfdisk; then
	sfdisk --relocate gpt-bak-std "$disk" >"$tmp/gpt.log" 2>&1 || die 5 "sfdisk could not write the backup GPT: $(tail -n 1 "$tmp/gpt.log")"
else
	log "warning: no sgdisk or sfdisk: the backup GPT is not written (run 'sgdisk -e $disk' later)"
fi
sync
if [ -b "$disk" ] && have blockdev; then blockdev --rereadpt "$disk" 2>/dev/null || log "warning: the kernel did not re-read the partition table of $disk"; fi
log "installed $url on $disk"
