#!/usr/bin/env bash
# The provenance story on the bundled sample clip: stamp, verify, strip the manifest by
# re-encoding, trace it back through the watermark, and check the audit chain.
set -euo pipefail
cd "$(dirname "$0")/.."
export ANIMA_HOME="${ANIMA_HOME:-$PWD/.demo/home}"
mkdir -p .demo

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "signing identity"
anima keys show 2>/dev/null || anima keys init --org "Demo Studio"

step "stamp the sample clip (watermark every frame, sign a C2PA manifest, record in the ledger)"
anima stamp samples/astronaut_pan.mp4 -o .demo/stamped.mp4 --reference samples/astronaut.jpg

step "verify it, trusting the demo studio's CA"
anima verify .demo/stamped.mp4 --trust "$ANIMA_HOME/keys/ca.pem"

step "re-upload: re-encode at CRF 28 and crop 10% (the manifest is lost)"
python - <<'PY'
from anima.media import read_video, write_video
video = read_video(".demo/stamped.mp4")
h, w = video.frames.shape[1:3]
dy, dx = h // 20, w // 20
write_video(".demo/reupload.mp4", video.frames[:, dy:h - dy, dx:w - dx], video.fps, crf=28)
PY
anima verify .demo/reupload.mp4

step "an unrelated clip"
anima verify samples/astronaut_pan.mp4

step "audit trail"
anima audit log --limit 5
anima audit verify
