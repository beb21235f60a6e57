#!/usr/bin/env bash
# Prepare this Debian host for Corral: Docker engine, gVisor (runsc) registered with Docker,
# dockerd running. Idempotent and quick when everything is already in place.
# Run as root. Output goes to stderr so callers can keep stdout clean.
set -euo pipefail
exec 1>&2

log() { printf '[corral-setup] %s\n' "$*"; }

need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
command -v runsc >/dev/null 2>&1 || need_pkgs+=(runsc)
command -v debootstrap >/dev/null 2>&1 || need_pkgs+=(debootstrap)
command -v iptables >/dev/null 2>&1 || need_pkgs+=(iptables)
command -v git >/dev/null 2>&1 || need_pkgs+=(git)
# Sandbox disk limits: an ext4 image per sandbox on a loop device.
command -v losetup >/dev/null 2>&1 || need_pkgs+=(util-linux)
{ command -v mkfs.ext4 && command -v debugfs; } >/dev/null 2>&1 || need_pkgs+=(e2fsprogs)
if ((${#need_pkgs[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    log "missing packages: ${need_pkgs[*]} — run this script as root (apt-get install ${need_pkgs[*]})"
    exit 1
  fi
  log "installing ${need_pkgs[*]} from apt"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

if [[ ! -e /dev/loop-control ]] && [[ $(id -u) -eq 0 ]]; then
  log "loading the loop module (sandbox disk limits need loop devices)"
  modprobe loop 2>/dev/null || log "no loop devices: sandboxes cannot get disk limits (see corral doctor)"
fi
# Networked sandboxes (issue 9): Corral fences its sandbox network with iptables rules, and traffic
# between two containers on one bridge only meets iptables with br_netfilter loaded and
# bridge-nf-call-ip(6)tables on. Corral refuses networked sandboxes when they are off.
BRIDGE_NF=/proc/sys/net/bridge/bridge-nf-call-iptables
if [[ ! -e $BRIDGE_NF ]]; then
  if ! command -v modprobe >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
    log "installing kmod (modprobe) to load br_netfilter"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kmod >/dev/null || true
  fi
  modprobe br_netfilter 2>/dev/null || log "could not load br_netfilter: networked sandboxes will be refused"
fi
for key in bridge-nf-call-iptables bridge-nf-call-ip6tables; do
  file=/proc/sys/net/bridge/$key
  if [[ -w $file && $(cat "$file") != 1 ]]; then
    echo 1 >"$file"
    log "set net.bridge.$key=1"
  fi
done

# Register the two gVisor runtimes Corral uses, merged into daemon.json without clobbering
# other keys: corral-runsc (no network at all) and corral-runsc-net (host netstack inside the
# container's own network namespace; the default netstack mode fails on this kernel).
RUNSC=$(command -v runsc)
DAEMON_JSON=/etc/docker/daemon.json
mkdir -p /etc/docker
changed=$(python3 - "$DAEMON_JSON" "$RUNSC" <<'PY'
import json, os, sys
path, runsc = sys.argv[1], sys.argv[2]
try:
    with open(path) as f:
        text = f.read().strip()
    conf = json.loads(text) if text else {}
except FileNotFoundError:
    conf = {}
if not isinstance(conf, dict):
    sys.exit(f"{path} is not a JSON object; fix it by hand")
runtimes = conf.setdefault("runtimes", {})
want = {
    "corral-runsc": {"path": runsc, "runtimeArgs": ["--network=none"]},
    "corral-runsc-net": {"path": runsc, "runtimeArgs": ["--network=host"]},
}
# Checkpoint/restore (stop and fork with memory) is an experimental Docker feature; SIGHUP does
# not apply this key, dockerd must be restarted.
if all(runtimes.get(k) == v for k, v in want.items()) and conf.get("experimental") is True:
    print("no")
    sys.exit()
restart = conf.get("experimental") is not True
conf["experimental"] = True
runtimes.update(want)
tmp = path + ".corral-tmp"
with open(tmp, "w") as f:
    json.dump(conf, f, indent=2)
    f.write("\n")
os.replace(tmp, path)
print("restart" if restart else "yes")
PY
)

docker_ok() { timeout 10 docker info >/dev/null 2>&1; }
start_dockerd() { (setsid dockerd >/var/log/corral-dockerd.log 2>&1 &); }
if docker_ok && [[ $changed == restart ]] && [[ $(docker info --format '{{.ExperimentalBuild}}' 2>/dev/null) != true ]]; then
  log "enabling Docker's experimental features (checkpoints): restarting dockerd"
  pkill -TERM -x dockerd || true
  for _ in $(seq 1 60); do pgrep -x dockerd >/dev/null || break; sleep 0.5; done
  start_dockerd
elif docker_ok; then
  if [[ $changed != no ]]; then
    log "runtimes registered; reloading dockerd"
    pkill -HUP -x dockerd || true
  fi
else
  if pgrep -x dockerd >/dev/null; then
    log "dockerd runs but does not answer yet; waiting"
  else
    log "starting dockerd"
    start_dockerd
  fi
fi
for _ in $(seq 1 120); do
  if docker_ok && docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q corral-runsc-net \
     && [[ $(docker info --format '{{.ExperimentalBuild}}' 2>/dev/null) == true ]]; then
    log "docker ready with runtimes corral-runsc, corral-runsc-net"
    exit 0
  fi
  sleep 0.5
done
log "dockerd did not become ready; see /var/log/corral-dockerd.log"
exit 1
