# Sourced by the profiling scripts (symbol-order.sh, gateway-instructions.sh).
# instant_upstream WORK: starts scripts/lib/instant-upstream.py on a free loopback port in the
# background, writes WORK/config.toml with one provider `fixed` pointed at it and WORK/home, exports
# EXOCLAW_CONFIG and EXOCLAW_HOME for them, and sets $gw to another free port for the gateway.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
instant_upstream() {
  local work=$1 up
  up=$(free_port); gw=$(free_port)
  python3 scripts/lib/instant-upstream.py "$up" &
  mkdir -p "$work/home"
  printf '[providers.fixed]\nkind = "openai"\nbase_url = "http://127.0.0.1:%s/v1"\napi_key = "sk-x"\n' "$up" >"$work/config.toml"
  export EXOCLAW_CONFIG="$work/config.toml" EXOCLAW_HOME="$work/home"
}
