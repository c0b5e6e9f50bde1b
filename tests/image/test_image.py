"""The bridge image, built from the Dockerfile and run the way the chart says.

The StatefulSet is rendered with Helm's Go SDK for a host-network pod on "node" 127.0.0.1
(the SIP sockets bind 127.0.0.1: tests never listen elsewhere), and the container runs with
exactly its image, command, environment (ConfigMap + downward API), secret files (mode 0440,
group fsGroup, like the projected volume), user, capabilities, no_new_privs, read-only root
filesystem, /tmp and /dev/shm. Around it, on loopback: Prosody, Redis, a chat user, a
baresip that records what it hears, a SIPp caller that speaks, and a raw SIP phone.

Checked: /readyz turns ready; PID 1 is the keeper with no effective capability, the
supervisor keeps only CAP_SYS_NICE and its workers have no capability; the SIPp caller joins
the linked room and the other phone hears it; a chat message reaches the phone as a SIP
MESSAGE; a SIGKILLed supervisor is restarted inside the running container, which ends the
old call with a BYE and serves again; SIGTERM drains (a new INVITE gets 503, the call in progress
goes on) and the container exits 0 when that call ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bridge import privileges
from bridge.devstack.ports import free_port, free_udp_tcp_port
from bridge.devstack.prosody import ProsodyServer
from bridge.devstack.redis_server import RedisServer
from bridge.probe import http_ready
from bridge.sip import devpeers as dp
from tests.chart.test_chart import bridge_container, materialise, render, secret_files
from tests.image.podman import TIMINGS, Podman, base_image
from tests.sip.rawsip import RawUac
from tests.xmpp.clients import chat_user

ROOM = "standup"
NODE = "127.0.0.1"
pytestmark = [pytest.mark.image, pytest.mark.timeout(900)]


def chart_values(prosody: ProsodyServer, redis: RedisServer, image: str) -> dict[str, Any]:
    repository, _, tag = image.rpartition(":")
    sip_port = free_udp_tcp_port()
    return {
        "image": {"repository": repository, "tag": tag},
        "xmpp": {
            "componentJid": prosody.component_domain,
            "host": "127.0.0.1",
            "port": prosody.component_port,
            "mucService": prosody.muc_domain,
            "secret": prosody.component_secret,
            "puppetKey": secrets.token_hex(16),
        },
        "sip": {
            "domain": "127.0.0.1",
            "port": sip_port,
            "bindAddress": NODE,
            "rtp": {"portStart": 12000 + sip_port % 20000, "portCount": 200},
        },
        "workers": {"poolSize": 2, "callsPerWorker": 4, "basePort": free_udp_tcp_port()},
        "redis": {"mode": "external", "external": {"url": redis.url}},
        "http": {"port": free_port()},
        "drain": {"timeoutSeconds": 120},
        "extraEnv": [{"name": "SIPMUC_ROOMS", "value": json.dumps([ROOM])}],
    }


def podman_run_args(docs: list[dict[str, Any]], workdir: Path, name: str) -> list[str]:
    """``podman run`` for the rendered bridge container: what kubelet would do with it."""
    pod, container = bridge_container(docs)
    assert pod["hostNetwork"] is True
    pod_context, context = pod["securityContext"], container["securityContext"]
    user = context.get("runAsUser", pod_context["runAsUser"])
    fs_group = pod_context["fsGroup"]
    secrets_dir = workdir / "secrets"
    secrets_dir.mkdir(mode=0o750)
    for file_name, value in secret_files(docs).items():
        path = secrets_dir / file_name
        path.write_text(value)
        path.chmod(0o440)  # projected volume defaultMode, group fsGroup
        os.chown(path, 0, fs_group)
    os.chown(secrets_dir, 0, fs_group)
    env = materialise(docs, workdir / "unused", **{"status.podIP": NODE, "status.hostIP": NODE})
    env = {k: v.replace(str(workdir / "unused"), "/etc/sipmuc/secrets") for k, v in env.items()}
    env_file = workdir / "env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    args = ["run", "-d", "--name", name, "--network=host", "--env-file", str(env_file),
            "--user", f"{user}:{pod_context['runAsGroup']}",
            "--group-add", str(fs_group)]  # fmt: skip
    if context.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if context.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    caps = context.get("capabilities", {})
    args += [f"--cap-drop={c.lower()}" for c in caps.get("drop", [])]
    args += [f"--cap-add={c.lower()}" for c in caps.get("add", [])]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount_name, mount in mounts.items():
        volume = volumes[mount_name]
        if mount_name == "secrets":
            args += ["-v", f"{secrets_dir}:{mount['mountPath']}:ro"]
        elif "emptyDir" in volume:
            size = volume["emptyDir"].get("sizeLimit", "64Mi").replace("Mi", "m")
            args += ["--tmpfs", f"{mount['mountPath']}:rw,size={size},mode=1777"]
        else:
            raise AssertionError(f"volume {mount_name} is not translated")
    command = container["command"]
    args += ["--entrypoint", command[0], container["image"], *command[1:]]
    return args


def wait_until(check: Any, what: str, timeout: float, log: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        tail = log.read_text(errors="replace")[-3000:] if log is not None else ""
        assert time.monotonic() < deadline, f"timed out: {what}\n{tail}"
        time.sleep(0.3)


def metric(url: str, name: str, labels: str = "") -> float | None:
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=3) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(f"{name}{{{labels}}} " if labels else f"{name} "):
                return float(line.rsplit(" ", 1)[1])
    return None


def children_of(pid: int) -> list[int]:
    """The direct children of ``pid`` (of any of its threads)."""
    return [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
            for c in (task / "children").read_text().split()]  # fmt: skip


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    return [pid, *(p for c in children_of(pid) for p in process_tree(c))]


async def test_image_runs_as_the_chart_says(
    podman: Podman,
    bridge_image: str,
    room_prosody: ProsodyServer,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    values = chart_values(room_prosody, redis_server, bridge_image)
    docs = render(values)
    _, container = bridge_container(docs)
    assert container["image"] == bridge_image
    assert container["command"][0] == "setpriv"  # realtime: the chart's default
    name = f"sipmuc-image-test-{secrets.token_hex(4)}"
    log = tmp_path / "bridge.log"
    podman.run(*podman_run_args(docs, tmp_path, name))
    logs = podman.popen("logs", "-f", name, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    http = f"http://{NODE}:{values['http']['port']}"
    sip_port = values["sip"]["port"]
    try:
        await asyncio.to_thread(
            wait_until, lambda: http_ready(f"{http}/readyz").ok, "/readyz", 120, log
        )
        await asyncio.to_thread(_helm_test, podman, docs, values)
        await asyncio.to_thread(_check_privileges, podman, name, http, log)
        run = Run(podman, name, sip_port, tmp_path, log, values["http"]["port"])
        await _call_chat_and_drain(room_prosody, run)
    finally:
        podman.run("rm", "-f", name, check=False)
        logs.kill()
        logs.wait()


def _helm_test(podman: Podman, docs: list[dict[str, Any]], values: dict[str, Any]) -> None:
    """The chart's `helm test` pod, run from the image against the bridge (its Service
    names are the loopback address here)."""
    (pod,) = [d for d in docs if d["kind"] == "Pod" and d["metadata"]["name"].endswith("probe")]
    (container,) = pod["spec"]["containers"]
    command = [re.sub(r"[\w.-]+\.svc", NODE, part) for part in container["command"]]
    assert f"http://{NODE}:{values['http']['port']}/readyz" in command
    done = podman.run("run", "--rm", "--network=host", "--user", "10001",
                      "--entrypoint", command[0], container["image"], *command[1:],
                      check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok   SIP OPTIONS" in done.stdout and "ok   GET" in done.stdout, done.stdout


def _check_privileges(podman: Podman, name: str, http: str, log: Path) -> None:
    """The supervisor keeps CAP_SYS_NICE alone; the workers have nothing; SCHED_FIFO is
    granted to the mixer and the workers' clocks when the kernel allows it in this cgroup."""
    keeper_pid = int(podman.run("inspect", "--format", "{{.State.Pid}}", name).stdout.strip())
    # PID 1 is the keeper (bridge.keeper): nothing effective, SYS_NICE only to pass it on
    keeper = privileges.capabilities(keeper_pid)
    assert keeper.effective == 0, keeper
    assert keeper.names(keeper.permitted) == keeper.names(keeper.ambient) == ["sys_nice"]
    (pid,) = children_of(keeper_pid)  # the supervisor
    tree = process_tree(pid)
    supervisor = privileges.capabilities(pid)
    assert supervisor.names() == ["sys_nice"], supervisor
    assert supervisor.inheritable == supervisor.ambient == 0
    workers = [privileges.capabilities(p) for p in tree[1:]]
    assert len(workers) >= 2
    assert all(w.effective == w.permitted == w.ambient == 0 for w in workers), workers
    for component in ("mixer", "workers"):

        def reported(c: str = component) -> bool:
            labels = f'component="{c}"'
            return metric(f"{http}/metrics", "sipmuc_realtime_scheduling", labels) is not None

        wait_until(reported, f"realtime gauge of {component}", 30, log)
    # The gauges tell the truth: SCHED_FIFO where the threads really have it. (On this VM the
    # kernel has RT group scheduling and podman's cgroup no RT budget: refused, gauges 0.)
    # the supervisor's spawned children: the mixer process first (the pool starts it before
    # its workers, and nothing was restarted yet), then the two SIP workers
    spawned = sorted(p for p in tree[1:] if "spawn_main" in _cmdline(p))
    assert len(spawned) == 3, [_cmdline(p) for p in tree]
    mixer_pid, worker_pids = spawned[0], spawned[1:]
    mixer = metric(f"{http}/metrics", "sipmuc_realtime_scheduling", 'component="mixer"')
    assert mixer == (1.0 if any(map(privileges.is_fifo, _threads(mixer_pid))) else 0.0)
    every = all(any(map(privileges.is_fifo, _threads(p))) for p in worker_pids)
    workers_rt = metric(f"{http}/metrics", "sipmuc_realtime_scheduling", 'component="workers"')
    assert workers_rt == (1.0 if every else 0.0)
    TIMINGS.note("SCHED_FIFO in the container", "granted" if mixer and every else "refused")
    # the supervisor asked for the workers' threads (it holds CAP_SYS_NICE, they do not)
    asked = [json.loads(line) for line in log.read_text().splitlines()
             if '"sip.worker.realtime"' in line]  # fmt: skip
    assert len(asked) >= 2 and all(a["granted"] + a["refused"] == 2 for a in asked), asked


def _supervisor_pid(podman: Podman, name: str) -> int:
    """The supervisor: the only child of the container's PID 1, the keeper."""
    keeper = int(podman.run("inspect", "--format", "{{.State.Pid}}", name).stdout.strip())
    (supervisor,) = children_of(keeper)
    return supervisor


def _threads(pid: int) -> list[int]:
    return [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()]


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


@dataclass
class Run:
    """The running container and where its things are."""

    podman: Podman
    name: str
    sip_port: int
    workdir: Path
    log: Path
    http_port: int

    def wait_exit(self) -> str:
        return self.podman.run("wait", self.name, timeout=60).stdout.strip()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


async def _call_chat_and_drain(prosody: ProsodyServer, run: Run) -> None:
    podman, name, sip_port, tmp_path, log = run.podman, run.name, run.sip_port, run.workdir, run.log
    speech = dp.speech("one two three four five six seven eight nine ten", 8000, tmp_path)
    pcap = tmp_path / "speech.pcap"
    dp.write_rtp_pcap(pcap, speech)
    silence = tmp_path / "silence.wav"
    dp.write_wav(silence, np.zeros(8000 * 40, np.int16), 8000)
    listener = dp.Baresip(tmp_path / "baresip", silence)
    phone = RawUac(sip_port, user="pat", display="Pat Phone")
    late = RawUac(sip_port, user="lou", display="Lou Late")
    muc = f"{ROOM}@{prosody.muc_domain}"
    try:
        async with chat_user(prosody, "alice") as alice:
            await alice.join(muc, "Alice")
            listener.start(f"sip:{ROOM}@127.0.0.1:{sip_port}", 40)
            await alice.wait_for(lambda: len(alice.occupants(muc)) >= 3, 30)  # +bridge +listener
            caller = dp.Sipp(dp.sipp_uac_scenario(ROOM, pcap=pcap, hold_ms=6000), sip_port,
                             tmp_path / "sipp")  # fmt: skip
            result = await asyncio.to_thread(caller.run)
            assert result.returncode == 0, result.stdout + result.errors

            answered = await asyncio.to_thread(phone.invite, ROOM)
            assert answered.status == 200, answered.first_line
            # a caller nobody vouches for shows as "Pat Phone (unverified)" (issue 18)
            await alice.wait_for(
                lambda: any(n.startswith("Pat Phone") for n in alice.occupants(muc)), 30
            )
            await alice.say(muc, "hello phones")
            message = await asyncio.to_thread(phone.wait_request, "MESSAGE", 20)
            assert "hello phones" in message.body

            # -------- the supervisor dies (SIGKILL): the container lives on, the keeper
            # restarts it, and the new supervisor ends the old calls cleanly (issue 17)
            supervisor = _supervisor_pid(podman, name)
            os.kill(supervisor, signal.SIGKILL)
            bye = await asyncio.to_thread(phone.wait_request, "BYE", 60)
            assert bye.method == "BYE"
            await asyncio.to_thread(
                wait_until, lambda: http_ready(f"http://{NODE}:{run.http_port}/readyz").ok,
                "/readyz after the supervisor's restart", 120, log,
            )  # fmt: skip
            assert _running(podman, name)
            assert _supervisor_pid(podman, name) != supervisor
            assert '"keeper.supervisor_died"' in log.read_text()
            phone.close()
            phone = RawUac(sip_port, user="pat", display="Pat Phone")
            answered = await asyncio.to_thread(phone.invite, ROOM)
            assert answered.status == 200, answered.first_line

            await asyncio.to_thread(listener.stop)
            podman.run("kill", "--signal", "TERM", name)
            await asyncio.to_thread(
                wait_until, lambda: '"node.draining"' in log.read_text(), "draining", 30, log
            )
            refused = await asyncio.to_thread(late.invite, ROOM)
            assert refused.status == 503, refused.first_line
            assert _running(podman, name)  # the call in progress goes on
            await asyncio.to_thread(phone.bye)
            code = await asyncio.to_thread(run.wait_exit)
            assert code == "0", (await asyncio.to_thread(run.log_text))[-3000:]
    finally:
        listener.stop()
        phone.close()
        late.close()
    heard, rate = listener.heard()
    correlation, _ = dp.best_correlation(dp.envelope(heard, rate), dp.envelope(speech, 8000))
    assert correlation > 0.6, f"the listener did not hear the SIPp caller ({correlation:.2f})"
    text = await asyncio.to_thread(run.log_text)
    events = [json.loads(line)["event"] for line in text.splitlines() if line.startswith("{")]
    assert events.index("bridge.drained") < events.index("bridge.stopped")


def _running(podman: Podman, name: str) -> bool:
    state = podman.run("inspect", "--format", "{{.State.Running}}", name, check=False)
    return state.stdout.strip() == "true"


FIND_PRIVILEGED = r"""
import os, stat
found = []
for root, dirs, files in os.walk("/"):
    if root in ("/proc", "/sys", "/dev"):
        dirs[:] = []
        continue
    for name in files:
        path = os.path.join(root, name)
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode) and mode & (stat.S_ISUID | stat.S_ISGID):
            found.append(path)
        try:
            os.getxattr(path, "security.capability", follow_symlinks=False)
            found.append("file capability: " + path)
        except OSError:
            pass
print("\n".join(found))
"""


def test_image_has_no_setuid_setgid_or_file_capability_binary(
    podman: Podman, bridge_image: str
) -> None:
    done = podman.run("run", "--rm", "--network=none", "--user", "0",
                      "--entrypoint", "/opt/sipmuc/venv/bin/python", bridge_image,
                      "-c", FIND_PRIVILEGED)  # fmt: skip
    assert done.stdout.strip() == "", done.stdout
    # the check has teeth: Debian's base has setuid binaries (su, mount, passwd, …)
    base = podman.run("run", "--rm", "--network=none", base_image(podman),
                      "find", "/", "-xdev", "-type", "f", "-perm", "/6000")  # fmt: skip
    assert "/usr/bin/su" in base.stdout.split()
    user = podman.run("run", "--rm", "--network=none", "--entrypoint", "id", bridge_image)
    assert user.stdout.startswith("uid=10001(sipmuc) gid=10001(sipmuc)")
