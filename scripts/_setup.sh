# Shared set-up for scripts/demo and scripts/test (sourced, not run).
# Installs what a fresh Debian machine lacks — apt packages and a virtualenv — and stays
# quiet and quick when everything is already there.  Usage: jf_setup APT_PACKAGES... -- PIP_EXTRA
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

jf_log() { printf '[setup] %s\n' "$*" >&2; }

jf_apt() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  jf_log "installing system packages: ${missing[*]}"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

jf_venv() {
  local extra="$1"
  local python="${PYTHON:-python3}"
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { jf_log "Python >= 3.11 is required"; exit 1; }
  [ -x "$VENV/bin/python" ] || { jf_log "creating virtualenv .venv"; "$python" -m venv "$VENV"; }
  local want
  want="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)-$extra"
  local stamp="$VENV/.jingfang-installed"
  if ! grep -qx -- "$want" "$stamp" 2>/dev/null && ! grep -qx -- "${want%-*}-test" "$stamp" 2>/dev/null; then
    jf_log "installing Python packages (.[$extra])"
    local log="$VENV/pip-install.log" target="$ROOT"
    [ "$extra" = "core" ] || target="$ROOT[$extra]"
    if ! { "$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip \
           && "$VENV/bin/pip" install -q --disable-pip-version-check -e "$target"; } >"$log" 2>&1; then
      cat "$log" >&2
      jf_log "pip install failed"
      exit 1
    fi
    echo "$want" > "$stamp"
  fi
}

jf_postgres() {
  # Start the machine's PostgreSQL cluster if it is installed but not running.
  command -v pg_isready >/dev/null || return 0
  pg_isready -q -h 127.0.0.1 -p 5432 && return 0
  if command -v pg_ctlcluster >/dev/null; then
    jf_log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start >/dev/null 2>&1 || true
    for _ in $(seq 1 50); do pg_isready -q -h 127.0.0.1 -p 5432 && return 0; sleep 0.2; done
  fi
  jf_log "PostgreSQL did not start"
  return 1
}
