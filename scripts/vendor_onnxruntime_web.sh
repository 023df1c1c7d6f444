#!/usr/bin/env bash
# Vendor onnxruntime-web's plain WASM build into vaedemo/static/ort/ (run from the repository root):
#   scripts/vendor_onnxruntime_web.sh [version]
# It runs `npm pack` in a temporary folder and copies only what the page's one-threaded WASM backend loads:
# ort.wasm.min.js (the API, a global `ort`), ort-wasm-simd-threaded.mjs (the module it imports) and its .wasm,
# stored brotli-compressed (.wasm.br, 2.4 MB against 14.8 MB: Hugging Face refuses files over 10 MB
# without Git LFS). vaedemo/ui/server.py serves the .wasm from it, as br or gzip as the browser accepts.
set -euo pipefail
VERSION="${1:-1.31.1}"
PY="${PY:-.venv/bin/python}"
DEST="vaedemo/static/ort"
[ -d vaedemo ] || { echo "run this from the repository root" >&2; exit 1; }
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack "onnxruntime-web@$VERSION" --silent > /dev/null)
TARBALL="$TMP/onnxruntime-web-$VERSION.tgz"
SHA256="$(sha256sum "$TARBALL" | cut -d' ' -f1)"
tar -xzf "$TARBALL" -C "$TMP"
LICENSE_NAME="$(node -p "require('$TMP/package/package.json').license")"
rm -rf "$DEST"
mkdir -p "$DEST"
cp "$TMP/package/dist/ort.wasm.min.js" "$TMP/package/dist/ort-wasm-simd-threaded.mjs" "$DEST/"
"$PY" - "$TMP/package/dist/ort-wasm-simd-threaded.wasm" "$DEST/ort-wasm-simd-threaded.wasm.br" <<'PYEOF'
import sys

import brotli

raw = open(sys.argv[1], "rb").read()
open(sys.argv[2], "wb").write(brotli.compress(raw, quality=11, mode=brotli.MODE_GENERIC))
PYEOF
WASM_SHA="$(sha256sum "$TMP/package/dist/ort-wasm-simd-threaded.wasm" | cut -d' ' -f1)"
if [ -f "$TMP/package/LICENSE" ]; then
  cp "$TMP/package/LICENSE" "$DEST/LICENSE"
else
  # The npm package names its licence (package.json) and states it in every file's header, but ships no
  # LICENSE file; this is the MIT licence of github.com/microsoft/onnxruntime, which it is built from.
  cat > "$DEST/LICENSE" <<'LICEOF'
MIT License

Copyright (c) Microsoft Corporation

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
LICEOF
fi
cat > "$DEST/PROVENANCE.md" <<MDEOF
# onnxruntime-web, vendored

- package: \`onnxruntime-web\` $VERSION from the npm registry (\`npm pack onnxruntime-web@$VERSION\`)
- tarball: onnxruntime-web-$VERSION.tgz, sha256 \`$SHA256\`
- licence: $LICENSE_NAME (\`LICENSE\` here), Copyright (c) Microsoft Corporation
- files: \`dist/ort.wasm.min.js\` and \`dist/ort-wasm-simd-threaded.mjs\` as they are;
  \`dist/ort-wasm-simd-threaded.wasm\` (sha256 \`$WASM_SHA\`) brotli-compressed as \`ort-wasm-simd-threaded.wasm.br\`
- made by \`scripts/vendor_onnxruntime_web.sh $VERSION\`; the app serves them from its own route (no CDN)
MDEOF
ls -l "$DEST"
