#!/usr/bin/env bash
# The whole story on bundled samples: stamp and verify a clip (also after a re-encode strips its
# manifest), enrol a consenting person, generate through the consent gate, see refusals, audit.
set -euo pipefail
cd "$(dirname "$0")/.."
export ANIMA_HOME="$PWD/.demo/home"
rm -rf .demo && mkdir -p .demo

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "signing identity"
anima keys init --org "Demo Studio"

step "stamp the sample clip (watermark every frame, sign a C2PA manifest, record in the ledger)"
anima stamp samples/astronaut_pan.mp4 -o .demo/stamped.mp4 --reference samples/astronaut.jpg

step "verify it, trusting the demo studio's CA"
anima verify .demo/stamped.mp4 --trust "$ANIMA_HOME/keys/ca.pem"

step "re-upload: re-encode at CRF 23 and crop 10% (the manifest is lost)"
python - <<'PY'
from anima.media import read_video, write_video
video = read_video(".demo/stamped.mp4")
h, w = video.frames.shape[1:3]
dy, dx = h // 20, w // 20
write_video(".demo/reupload.mp4", video.frames[:, dy:h - dy, dx:w - dx], video.fps, crf=23)
PY
anima verify .demo/reupload.mp4

step "an unrelated clip"
anima verify samples/astronaut_pan.mp4

step "consent: enrol a (demonstration) consenting person for education, valid 30 days"
anima consent enroll "Eileen Collins (demo)" --photo samples/astronaut.jpg \
    --statement samples/demo-consent.txt --purpose education --expires "$(date -u -d '+30 days' +%F)"
anima consent list
anima policy check --reference samples/astronaut.jpg --purpose education

step "generate with the shipped default model (anima-puppets): a fictional puppet turns around"
anima generate --reference samples/puppet.png --reference-pose samples/puppet.pose.json \
    --pose samples/puppet-turn.pose.json --fictional --purpose education -o .demo/generated.mp4
anima verify .demo/generated.mp4 --trust "$ANIMA_HOME/keys/ca.pem"

step "refused: a real person's photo declared fictional"
if anima generate --reference samples/astronaut.jpg --pose motion:wave --fictional --purpose education \
    -o .demo/refused.mp4; then
  echo "ERROR: the gate let a real face through as fictional" >&2; exit 1
fi
test ! -e .demo/refused.mp4 && echo "   refused, exit code 3, nothing written"

step "refused: a purpose the consent does not cover"
if anima generate --reference samples/astronaut.jpg --pose motion:wave --purpose advertising \
    -o .demo/refused.mp4; then
  echo "ERROR: the gate allowed a purpose without consent" >&2; exit 1
fi
test ! -e .demo/refused.mp4 && echo "   refused, exit code 3, nothing written"

step "refused: consent revoked"
anima consent revoke "$(anima consent list --json | python -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')" \
    --reason "demo: consent withdrawn"
anima policy check --reference samples/astronaut.jpg --purpose education || echo "   refused, exit code $?"

step "audit trail"
anima audit log --limit 12
anima audit verify
