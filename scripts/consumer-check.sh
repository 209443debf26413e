#!/usr/bin/env bash
# Depends on Curio the way a user does — by URL and version — from a
# throwaway package outside this repository, once with the default traits
# and once with traits: ["Epoll"], builds it and runs its program.
#
# The dependency is a clone of this repository (its committed files plus the
# working tree's tracked and new, not ignored, files) tagged 99.0.0 and named
# by a file:// URL. A target with unsafeFlags, a product that does not build
# from a clean clone, or a trait that does not reach the consumer fails here.
#
#   scripts/consumer-check.sh            both variants
#   scripts/consumer-check.sh default    or: epoll
#
# Each variant builds in a directory of its own, sharing nothing with the
# repository's .build; the times are printed at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SWIFT=${SWIFT:-swift}
VARIANTS=${*:-default epoll}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/curio-consumer.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# The clone: HEAD, then the working tree's changes on top, in one commit.
git clone -q "$ROOT" "$WORK/curio"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard) |
    (cd "$ROOT" && xargs -0 -r cp --parents -t "$WORK/curio" 2>/dev/null || true)
(cd "$ROOT" && git ls-files -z --deleted) | (cd "$WORK/curio" && xargs -0 -r rm -f)
git -C "$WORK/curio" add -A
git -C "$WORK/curio" -c user.name=consumer-check -c user.email=consumer-check@localhost \
    commit -q --allow-empty -m "consumer check snapshot"
git -C "$WORK/curio" tag 99.0.0

summary=()
for variant in $VARIANTS; do
    case $variant in
    default) traits='' expect='io_uring|epoll' ;;
    epoll) traits=', traits: ["Epoll"]' expect='epoll' ;;
    *) echo "consumer-check: unknown variant '$variant' (default or epoll)" >&2; exit 2 ;;
    esac
    dir="$WORK/consumer-$variant"
    mkdir -p "$dir"
    cp -R "$ROOT/Tests/Consumer/Sources" "$dir/"
    sed -e "s|@CURIO_URL@|file://$WORK/curio|" -e "s|@CURIO_VERSION@|99.0.0|" \
        -e "s|@CURIO_TRAITS@|$traits|" "$ROOT/Tests/Consumer/Package.swift.in" > "$dir/Package.swift"
    echo "consumer-check [$variant]: building a package that depends on file://$WORK/curio from 99.0.0$traits"
    start=$(date +%s)
    (cd "$dir" && $SWIFT build -q)
    built=$(date +%s)
    # Bounded: a hand-off that blocks, a drain that waits forever or a lost
    # signal would otherwise hang the check instead of failing it.
    if ! out=$(cd "$dir" && timeout "${CONSUMER_TIMEOUT:-120}" "$($SWIFT build --show-bin-path)/consumer" 2>&1); then
        echo "$out" | sed "s/^/consumer-check [$variant]: /" >&2
        echo "consumer-check [$variant]: FAILED: the program failed or did not end within ${CONSUMER_TIMEOUT:-120} s" >&2
        exit 1
    fi
    echo "$out" | sed "s/^/consumer-check [$variant]: /"
    backend=$(echo "$out" | sed -n 's/^backend: //p')
    if ! [[ $backend =~ ^($expect)$ ]]; then
        echo "consumer-check [$variant]: FAILED: backend '$backend', expected $expect" >&2
        exit 1
    fi
    if ! echo "$out" | grep -qx 'consumer: ok'; then
        echo "consumer-check [$variant]: FAILED: the program did not finish" >&2
        exit 1
    fi
    summary+=("$variant: built in $((built - start)) s, backend $backend")
done
for line in "${summary[@]}"; do echo "consumer-check: $line"; done
echo "consumer-check: all ${#summary[@]} variants OK"
