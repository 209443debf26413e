#!/usr/bin/env bash
# Builds Curio's DocC documentation and fails on any warning (a broken or
# ambiguous symbol link) and on any public symbol of the library's own
# sources that has no doc comment.
#
#   scripts/docs-check.sh        (make docs)
#
# The archive is left in .build/plugins/Swift-DocC/outputs/Curio.doccarchive.
set -euo pipefail
cd "$(dirname "$0")/.."
SWIFT=${SWIFT:-swift}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

$SWIFT package generate-documentation --target Curio 2>&1 | tee "$log"
warnings=$(grep -c '^warning:' "$log" || true)

# Public symbols declared in Sources/ without a doc comment, from the symbol
# graph the plugin just extracted (members a protocol documents, such as
# `description`, inherit its comment and are not listed).
graph=$(find .build -path '*extracted-symbols*' -name 'Curio.symbols.json' -newer "$log" -print -quit 2>/dev/null || true)
[ -n "$graph" ] || graph=$(find .build -path '*extracted-symbols*' -name 'Curio.symbols.json' -print -quit)
undocumented=$(python3 - "$graph" "$PWD" <<'PY'
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
if [ -n "$undocumented" ]; then echo "$undocumented"; fi
count=$(printf '%s' "$undocumented" | grep -c . || true)
echo "docs-check: $warnings DocC warnings, $count undocumented public symbols"
[ "$warnings" -eq 0 ] && [ "$count" -eq 0 ]
