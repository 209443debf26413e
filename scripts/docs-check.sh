#!/usr/bin/env bash
# Builds the DocC documentation of Curio and of its other products
# (CurioTLS, CurioHTTP, CurioHTTPS, CurioServiceLifecycle) and fails on any
# warning (a broken or ambiguous symbol link) and on any public symbol of
# their own sources that has no doc comment.
#
#   scripts/docs-check.sh                 (make docs) every product
#   DOCS_TARGETS=Curio scripts/docs-check.sh   some of them
#
# The archives are left in .build/plugins/Swift-DocC/outputs/<Target>.doccarchive.
set -euo pipefail
cd "$(dirname "$0")/.."
SWIFT=${SWIFT:-swift}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

TARGETS=${DOCS_TARGETS:-Curio CurioTLS CurioHTTP CurioHTTPS CurioServiceLifecycle}
args=()
for t in $TARGETS; do args+=(--target "$t"); done
$SWIFT package generate-documentation "${args[@]}" 2>&1 | tee "$log"
warnings=$(grep -c '^warning:' "$log" || true)

# Public symbols declared in Sources/ without a doc comment, from the symbol
# graph the plugin just extracted (members a protocol documents, such as
# `description`, inherit its comment and are not listed).
undocumented=""
for t in $TARGETS; do
    graph=$(find .build -path '*extracted-symbols*' -name "$t.symbols.json" -newer "$log" -print -quit 2>/dev/null || true)
    [ -n "$graph" ] || graph=$(find .build -path '*extracted-symbols*' -name "$t.symbols.json" -print -quit)
    [ -n "$graph" ] || { echo "docs-check: no symbol graph for $t" >&2; exit 1; }
    undocumented+=$(python3 - "$graph" "$PWD" <<'PY'
import json, sys
graph, root = sys.argv[1], sys.argv[2]
for s in json.load(open(graph))['symbols']:
    loc = s.get('location')
    if s.get('docComment') or not loc:
        continue
    path = loc['uri'].replace('file://' + root + '/', '')
    if path.startswith('Sources/'):
        print(f"{path}:{loc['position']['line'] + 1}: {'.'.join(s['pathComponents'])} has no doc comment")
PY
)
    undocumented+=$'\n'
done
undocumented=$(printf '%s' "$undocumented" | grep . || true)
if [ -n "$undocumented" ]; then echo "$undocumented"; fi
count=$(printf '%s' "$undocumented" | grep -c . || true)
echo "docs-check: $warnings DocC warnings, $count undocumented public symbols"
[ "$warnings" -eq 0 ] && [ "$count" -eq 0 ]
