#!/usr/bin/env bash
# Download Multi30k task 1 (raw, gzipped) from the upstream multi30k/dataset repository
# into data/multi30k/raw/ and verify every file against data/multi30k.sha256.
# Not needed where ../shared/data/multi30k/raw exists (the pipeline finds it there).
set -euo pipefail
cd "$(dirname "$0")/.."
base=${MULTI30K_URL:-https://github.com/multi30k/dataset/raw/master/data/task1/raw}
dest=data/multi30k/raw
mkdir -p "$dest"
while read -r sum name; do
  if [ ! -f "$dest/$name" ]; then
    echo "fetching $name"
    curl -fsSL -o "$dest/$name.part" "$base/$name" && mv "$dest/$name.part" "$dest/$name"
  fi
done < data/multi30k.sha256
(cd "$dest" && sha256sum -c --quiet ../../multi30k.sha256) && echo "Multi30k ready in $dest"
