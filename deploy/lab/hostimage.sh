#!/usr/bin/env bash
# Podman set-up and the systemd host image for the local container fleet (run as root).
#
#   bash deploy/lab/hostimage.sh            podman + runc config + image (cached; fast when done)
#   bash deploy/lab/hostimage.sh --rebuild  throw the image and its tarball cache away and build again
#
# The image is a debootstrap'ed Debian 12 (minbase + systemd, sshd, python3, curl) imported with
# `podman import`. Build order, cheapest first:
#   1. the image exists with the current recipe label          -> nothing to do
#   2. ${MODELFLEET_CACHE}/modelfleet-host-<recipe>.tar exists  -> `podman load` (about 5 s)
#   3. otherwise debootstrap + import (about 80 s on 2 cores), then `podman save` the tarball.
# Every step writes to a temporary name and renames at the end, so an interrupted build leaves
# nothing that a later run would mistake for a finished one.
set -euo pipefail

IMAGE=${MODELFLEET_IMAGE:-localhost/modelfleet-host:bookworm}
# Bump when the package list or import options change: old images and tarballs are then rebuilt.
RECIPE=1
PACKAGES=openssh-server,python3,iproute2,systemd,systemd-sysv,dbus,sudo,ca-certificates,curl
MIRROR=${MODELFLEET_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${MODELFLEET_CACHE:-$HOME/.cache/modelfleet}
TARBALL=$CACHE/modelfleet-host-bookworm-r$RECIPE.tar
CONTAINERS_CONF=/etc/containers/containers.conf
NEED_MB=1500 # rootfs (320 MB) + image (210 MB) + tarball (210 MB) + headroom for containers

say() { echo "hostimage: $*"; }
die() {
    echo "hostimage: ERROR: $*" >&2
    exit 1
}
elapsed() { echo "$((SECONDS - $1)) s"; }

check_prerequisites() {
    [ "$(id -u)" = 0 ] || die "must run as root (podman runs the fleet rootful): sudo bash $0"
    command -v podman >/dev/null || die "podman is not installed: apt-get install podman runc"
    command -v runc >/dev/null || die "runc is not installed: apt-get install runc"
    mkdir -p "$CACHE"
    local free_mb
    for dir in "$CACHE" /var/lib/containers; do
        mkdir -p "$dir"
        free_mb=$(df -Pm "$dir" | awk 'NR==2 {print $4}')
        [ "$free_mb" -ge "$NEED_MB" ] ||
            die "only ${free_mb} MB free under $dir; the host image needs about ${NEED_MB} MB." \
                "Free some space (podman system prune, or set MODELFLEET_CACHE to a larger disk)."
    done
}

configure_podman() {
    # crun cannot start containers on a cgroup v1 / hybrid host ("cgroups in hybrid mode not
    # supported"); runc can. default_ulimits = [] keeps podman from raising limits runc rejects.
    local wanted
    wanted=$'# Written by modelfleet deploy/lab/hostimage.sh\n[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"'
    if [ -f "$CONTAINERS_CONF" ] && [ "$(cat "$CONTAINERS_CONF")" = "$wanted" ]; then
        return
    fi
    if [ -f "$CONTAINERS_CONF" ] && [ ! -f "$CONTAINERS_CONF.modelfleet-orig" ]; then
        cp -p "$CONTAINERS_CONF" "$CONTAINERS_CONF.modelfleet-orig"
        say "saved the previous $CONTAINERS_CONF as $CONTAINERS_CONF.modelfleet-orig"
    fi
    mkdir -p "$(dirname "$CONTAINERS_CONF")"
    printf '%s\n' "$wanted" >"$CONTAINERS_CONF"
    say "wrote $CONTAINERS_CONF (runtime = runc)"
    local runtime
    runtime=$(podman info --format '{{.Host.OCIRuntime.Name}}' 2>/dev/null) ||
        die "podman info failed after writing $CONTAINERS_CONF; run 'podman info' to see why"
    [ "$runtime" = runc ] || die "podman still uses '$runtime' instead of runc; check $CONTAINERS_CONF"
}

image_recipe() {
    podman image inspect --format '{{ index .Config.Labels "modelfleet.recipe" }}' "$IMAGE" \
        2>/dev/null || true
}

build_image() {
    local work="$CACHE/build.partial"
    # A leftover from an interrupted build is thrown away, never reused.
    rm -rf "$work"
    mkdir -p "$work"
    local started=$SECONDS
    say "[1/3] debootstrap Debian 12 into $work/rootfs (about 80 s on 2 cores; log: $work/debootstrap.log)"
    command -v debootstrap >/dev/null || die "debootstrap is not installed: apt-get install debootstrap"
    debootstrap --variant=minbase --include="$PACKAGES" bookworm "$work/rootfs" "$MIRROR" \
        >"$work/debootstrap.log" 2>&1 ||
        die "debootstrap failed (mirror $MIRROR); last lines of $work/debootstrap.log:
$(tail -n 5 "$work/debootstrap.log")"
    say "      done in $(elapsed "$started")"

    started=$SECONDS
    say "[2/3] podman import as $IMAGE (about 6 s)"
    # Leave out what the first `apt-get update` rewrites anyway: saves about 100 MB per image.
    tar -C "$work/rootfs" \
        --exclude='./var/cache/apt/archives/*.deb' \
        --exclude='./var/lib/apt/lists/*_Packages' \
        --exclude='./var/lib/apt/lists/*_Translation-*' \
        -c . |
        podman import --quiet \
            --change 'CMD ["/sbin/init"]' \
            --change 'STOPSIGNAL SIGRTMIN+3' \
            --change "LABEL modelfleet.recipe=$RECIPE" \
            - "$IMAGE-building" >/dev/null
    podman tag "$IMAGE-building" "$IMAGE"
    podman untag "$IMAGE-building" "$IMAGE-building" 2>/dev/null || true
    say "      done in $(elapsed "$started")"

    started=$SECONDS
    say "[3/3] podman save to $TARBALL (about 3 s)"
    # podman save refuses a non-empty output file ("docker-archive doesn't support modifying
    # existing images"), so the leftover of an interrupted save goes first.
    rm -f "$TARBALL.partial"
    podman save --quiet -o "$TARBALL.partial" "$IMAGE" >/dev/null
    mv -f "$TARBALL.partial" "$TARBALL"
    rm -rf "$work"
    say "      done in $(elapsed "$started")"
}

smoke_test() {
    # One throwaway container proves the runtime and systemd detection work on this host.
    local out
    out=$(podman run --rm --pull=never "$IMAGE" cat /etc/debian_version 2>&1) ||
        die "a test container from $IMAGE failed to start: $out"
}

main() {
    if [ "${1:-}" = "--rebuild" ]; then
        check_prerequisites
        # Untag, never `rmi -f`: that would also remove the containers running the image.
        podman untag "$IMAGE" >/dev/null 2>&1 || true
        rm -f "$TARBALL"
    fi
    check_prerequisites
    configure_podman
    local started=$SECONDS
    if [ "$(image_recipe)" = "$RECIPE" ]; then
        say "$IMAGE is present (recipe $RECIPE)"
    elif [ -f "$TARBALL" ]; then
        say "loading $IMAGE from $TARBALL (about 5 s)"
        podman load --quiet -i "$TARBALL" >/dev/null ||
            { rm -f "$TARBALL" && die "the cached tarball was unreadable and is removed; run again"; }
        say "loaded in $(elapsed "$started")"
    else
        say "building $IMAGE (about 90 s in total; cached afterwards)"
        build_image
        say "built in $(elapsed "$started")"
    fi
    [ "$(image_recipe)" = "$RECIPE" ] || die "$IMAGE is missing after the build; see the messages above"
    smoke_test
}

main "$@"
