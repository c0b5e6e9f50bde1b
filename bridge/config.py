"""Settings: environment variables (``SIPMUC_…``) over an optional TOML file over defaults.

One validated model so that a bad value stops the service at start-up with the key named,
instead of failing later in the middle of a call.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from enum import StrEnum
from ipaddress import ip_address
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bridge.core.caller_identity import AdmitMode, TrustedPeers
from mixer.frames import TICK_SECONDS

ENV_PREFIX = "SIPMUC_"
CONFIG_FILE_ENV = "SIPMUC_CONFIG"

Port = Annotated[int, Field(ge=1, le=65535)]
_LOOPBACK = frozenset({"localhost", "::1", "ip6-localhost"})
_DOMAIN = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]", "*"})
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?$")


class ConfigError(Exception):
    """Invalid or unreadable configuration; the message names every bad key."""


class LogFormat(StrEnum):
    AUTO = "auto"  # console on a terminal, JSON otherwise
    JSON = "json"
    CONSOLE = "console"


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class Transport(StrEnum):
    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"


class _Section(BaseModel):
    """A settings section. ``_SECRET_FILES`` maps a secret field to a ``<field>_file`` path
    field: the secret is then read from that file (a mounted Kubernetes Secret, a Docker
    secret), so that it never sits in the environment or in a rendered manifest."""

    model_config = ConfigDict(extra="forbid")
    _SECRET_FILES: ClassVar[dict[str, str]] = {}

    @model_validator(mode="after")
    def _read_secret_files(self) -> Self:
        for name, file_field in self._SECRET_FILES.items():
            path: Path | None = getattr(self, file_field)
            if path is None:
                continue
            current = getattr(self, name)
            if current is not None and current.get_secret_value():
                raise ValueError(f"set either {name} or {file_field}, not both")
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                raise ValueError(f"{file_field}: cannot read {path}: {error}") from None
            value = text.rstrip("\r\n")
            if not value:
                raise ValueError(f"{file_field}: {path} is empty")
            setattr(self, name, SecretStr(value))
        return self


class ChatLimits(_Section):
    """What chat occupants and callers can repeat, keyed on who they are (the real JID, not a
    nick; a caller's participant), so that one of them never degrades a room for the others."""

    command_burst: int = Field(
        5, ge=1, description="Room commands (!…, ad-hoc) an occupant may issue in a burst"
    )
    command_per_minute: float = Field(
        12.0, gt=0, description="Sustained room command rate per occupant (real JID) and room"
    )
    dtmf_command_burst: int = Field(
        4, ge=1, description="*6 self-mute toggles (and *7/*8) a caller may key in a burst"
    )
    dtmf_command_per_minute: float = Field(
        10.0,
        gt=0,
        description="Sustained *6/*7/*8 rate per caller's participant (each toggle changes a "
        "puppet's role in the room: a presence to every occupant, a write to Redis)",
    )
    private_reply_lines: int = Field(
        3,
        ge=1,
        description="Command replies longer than this many lines (help, status) and every "
        "refusal or error go to the issuer privately instead of the whole room",
    )
    adhoc_session_ttl: float = Field(
        300.0,
        gt=0,
        description="Seconds an unfinished XEP-0050 command session is kept (a form nobody "
        "submits); finished ones are freed at once",
    )
    adhoc_max_sessions: int = Field(
        1000, ge=1, description="XEP-0050 sessions kept at most (the oldest go first)"
    )


class LinkSettings(_Section):
    """Which rooms may be linked to a conference by a command (!link, ad-hoc link)."""

    self_service: bool = Field(
        False,
        description="Let room owners link their rooms with !link / the ad-hoc link command "
        "(off: only the operator links, with the rooms setting)",
    )
    allowed_rooms: list[str] = Field(
        default_factory=list,
        description="Room JID patterns (shell style, e.g. '*@conference.example.org', "
        "'team-*@muc.example.org') that commands may link; empty = any room of "
        "xmpp.muc_service",
    )
    max_rooms: int = Field(
        50, ge=0, description="Linked rooms this node serves at most (0 = no limit)"
    )

    @field_validator("allowed_rooms")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if "@" not in pattern or "/" in pattern or " " in pattern:
                raise ValueError(f"{pattern!r} is not a room JID pattern such as '*@muc.host'")
        return [p.lower() for p in value]


class XmppSettings(_Section):
    """XEP-0114 external component and the MUC service it serves."""

    _SECRET_FILES: ClassVar[dict[str, str]] = {
        "secret": "secret_file",
        "puppet_key": "puppet_key_file",
    }

    component_jid: str = Field("bridge.localhost", description="JID of the bridge's component")
    secret: SecretStr = Field(SecretStr(""), description="XEP-0114 shared secret")
    secret_file: Path | None = Field(
        None, description="File holding the XEP-0114 shared secret (instead of secret)"
    )
    puppet_key: SecretStr = Field(
        SecretStr(""),
        description="Key of the puppets' JIDs (an HMAC of the caller's identity): keep it "
        "stable, since bans on puppet JIDs and room affiliations depend on it, and the same "
        "on every replica; empty = derived from the component secret (rotating that secret "
        "then renames every puppet)",
    )
    puppet_key_file: Path | None = Field(
        None, description="File holding puppet_key (instead of puppet_key)"
    )
    host: str = Field("127.0.0.1", description="XMPP server host for the component connection")
    port: Port = Field(5347, description="XMPP server component port")
    muc_service: str = Field("conference.localhost", description="MUC service JID of the rooms")
    control_nick: str = Field("bridge", min_length=1, description="Nick of the control occupant")
    connect_timeout: float = Field(
        10.0, gt=0, description="Seconds to wait for the component handshake at start-up"
    )
    join_timeout: float = Field(
        10.0, gt=0, description="Seconds to wait for a room's answer to a join (control or puppet)"
    )
    reconnect_max_delay: float = Field(
        30.0, gt=0, description="Longest pause between reconnect attempts (backoff doubles to it)"
    )
    self_ping_interval: float = Field(
        60.0, gt=0, description="XEP-0410 self-ping period per room, to notice a silent drop-out"
    )
    affiliation_sync_interval: float = Field(
        30.0,
        gt=0,
        description="Seconds between reads of each room's outcast list: a ban lifted on an "
        "absent puppet sends no presence, so this is how an unban reaches the call side",
    )
    announce_unencrypted_calls: bool = Field(
        True,
        description="Tell the room when a caller joins without TLS and SRTP (RFC 7081 §7: "
        "chat users must know that part of the meeting can be overheard)",
    )
    show_raw_numbers: bool = Field(
        False, description="Show callers' telephone numbers unmasked in nicks (privacy: off)"
    )
    max_message_chars: int = Field(
        2000, ge=1, description="Longest message relayed either way; longer ones are refused"
    )
    sip_message_max_bytes: int = Field(
        1200,
        ge=64,
        le=60000,
        description="Largest SIP MESSAGE body; longer chat text is split (RFC 3428: < 1300)",
    )
    rate_limit_burst: int = Field(
        5, ge=1, description="Messages a sender may relay in a burst before the rate applies"
    )
    rate_limit_per_minute: float = Field(
        20.0,
        gt=0,
        description="Sustained relay rate per sender: a SIP leg, or a chat occupant keyed on "
        "the real JID (group and private messages to callers share it; a nick change keeps it)",
    )
    dial_in_label: str = Field(
        "Join by phone: ",
        min_length=1,
        description="Text before the SIP URI where every client shows it: the room "
        "description and, when the room has none, its subject (audio-video-uri in disco#info "
        "stays)",
    )
    dial_in_description: bool = Field(
        True, description="Put '<dial_in_label><SIP URI>' in the room description"
    )
    dial_in_subject: bool = Field(
        True,
        description="Set the room subject to '<dial_in_label><SIP URI>' when the room has "
        "none (clients show the subject on joining; a subject someone set is never replaced)",
    )
    moderated_rooms: bool = Field(
        True,
        description="Make linked rooms moderated (muc#roomconfig_moderatedroom), so that voice, "
        "which the bridge mirrors to the call, means what clients show; newcomers keep their "
        "voice (our Prosody module, or ejabberd's members_by_default); never on servers where "
        "they would not",
    )
    speaking_status: bool = Field(
        True,
        description="Show who is talking on the phone as the caller's presence status in the "
        "room ('speaking'), rate-limited (see docs/design.md)",
    )
    speaking_min_interval: float = Field(
        2.0,
        ge=0.2,
        description="Seconds at least between two presence updates of one caller's speaking "
        "status; shorter pauses in speech do not end 'speaking'",
    )
    limits: ChatLimits = Field(default_factory=ChatLimits)
    linking: LinkSettings = Field(default_factory=LinkSettings)

    @field_validator("component_jid", "muc_service")
    @classmethod
    def _bare_domain(cls, value: str) -> str:
        if not value or "@" in value or "/" in value or " " in value:
            raise ValueError("must be a bare domain JID such as 'bridge.example.org'")
        return value.lower()


def _networks(items: list[str]) -> list[str]:
    for item in items:
        try:
            ipaddress.ip_network(item.strip(), strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network (CIDR)") from None
    return [item.strip() for item in items]


class SipLimits(_Section):
    """Abuse limits on what outsiders can trigger over SIP (docs/security.md). Sources are
    the addresses requests come from; 0 turns a cap off."""

    trusted_sources: list[str] = Field(
        default_factory=list,
        description="IP addresses or networks (CIDR) of trusted peers, e.g. your PBX or SBC "
        "that carries many callers: exempt from the per-source caps and rates "
        "(identity.trusted_peers are added to this list)",
    )
    calls_per_source: int = Field(
        4, ge=0, description="Calls one source address may hold at once, node-wide (486)"
    )
    call_rate_burst: int = Field(
        10, ge=1, description="INVITEs one source address may send in a burst (then 503)"
    )
    call_rate_per_minute: float = Field(
        30.0, gt=0, description="Sustained new-INVITE rate per source address and worker (503)"
    )
    callers_per_room: int = Field(
        50, ge=0, description="Calls one conference may hold at once, dialled ones included (486)"
    )
    ack_timeout: float = Field(
        6.0,
        gt=0,
        le=32,
        description="Seconds an answered call may wait for the caller's ACK before its slot is "
        "freed (a 200 without ACK otherwise holds a slot ~32 s)",
    )
    request_rate_burst: int = Field(
        20,
        ge=1,
        description="Other requests (MESSAGE, SUBSCRIBE, OPTIONS, INFO …; not ACK, BYE, CANCEL "
        "or re-INVITE) one source address may send in a burst",
    )
    request_rate_per_minute: float = Field(
        120.0, gt=0, description="Sustained rate of those requests per source and worker (503)"
    )
    subscribe_policy: Literal["callers", "public", "anyone", "nobody"] = Field(
        "public",
        description="Who may SUBSCRIBE to a room's conference events: 'callers' (sources with a "
        "call in that room, and trusted sources), 'public' (also anyone for public, not "
        "members-only rooms), 'anyone' (outsiders see no nicks of members-only rooms), "
        "'nobody' (trusted sources only)",
    )
    subscriptions_per_room: int = Field(
        20, ge=0, description="Conference event subscriptions per room at once (per worker)"
    )
    subscriptions_per_source: int = Field(
        5, ge=0, description="Conference event subscriptions per source address (per worker)"
    )

    _check_networks = field_validator("trusted_sources")(_networks)


class DialOutSettings(_Section):
    """``!dial`` and linking to an external conference: the bridge places calls, so an
    operator dial plan says where to (docs/security.md). Off by default."""

    enabled: bool = Field(False, description="Allow dial-out at all (off: !dial is refused)")
    number_patterns: list[str] = Field(
        default_factory=list,
        description="Regular expressions a dialled number must match in full (e.g. "
        "'\\+?49[0-9]{6,12}'); numbers are sent as sip:<number>@<trunk domain>",
    )
    domains: list[str] = Field(
        default_factory=list,
        description="SIP domains a sip: URI target may name (host names, never IP literals, "
        "never our own SIP domain)",
    )
    proxy: str | None = Field(
        None,
        description="Outbound proxy or trunk every dial-out goes through, as a SIP URI such "
        "as 'sip:trunk.example.net;transport=tls' (unset: targets are resolved directly)",
    )
    trunk_domain: str = Field(
        "",
        description="Domain of number targets: a number is dialled as sip:<number>@<trunk_domain> "
        "(through the proxy when one is set); never this bridge's own sip.domain",
    )
    username: str = Field("", description="Digest user name for the trunk")
    password: SecretStr = Field(SecretStr(""), description="Digest password for the trunk")
    ring_timeout: float = Field(
        45.0, gt=0, le=300, description="Seconds a dialled call may ring before it is cancelled"
    )
    per_room: int = Field(2, ge=1, description="Dial-outs a room may have ringing or up at once")
    per_node: int = Field(10, ge=1, description="Dial-outs a node may have ringing or up at once")
    ca_file: Path | None = Field(
        None,
        description="PEM CA bundle that TLS dial-out verifies the peer against (unset = the "
        "system bundle); certificates are always verified",
    )
    allow_private: bool = Field(
        False,
        description="Let domain targets resolve to private, loopback or link-local addresses "
        "(a lab or test network only: otherwise the room could probe your internal network)",
    )

    @field_validator("ca_file")
    @classmethod
    def _ca_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"CA bundle {value} does not exist")
        return value

    @field_validator("number_patterns")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"bad pattern {pattern!r}: {error}") from None
        return value

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        out = []
        for item in value:
            domain = item.strip().lower().rstrip(".")
            if not _DOMAIN.fullmatch(domain) or re.fullmatch(r"[0-9.]+", domain):
                raise ValueError(f"{item!r} is not a DNS domain name (no IP literals)")
            out.append(domain)
        return out

    @model_validator(mode="after")
    def _plan_needed(self) -> Self:
        if self.enabled and not (self.number_patterns or self.domains):
            raise ValueError("dial-out is enabled but the dial plan allows nothing: set "
                             "number_patterns and/or domains")
        if self.enabled and self.number_patterns and not self.trunk_domain:
            raise ValueError("number_patterns need a trunk_domain to send numbers to")
        if self.proxy and not re.fullmatch(r"sips?:[^\s<>\"?]+", self.proxy):
            raise ValueError("proxy must be a SIP URI such as 'sip:trunk.example.net;lr'")
        return self


class SipSettings(_Section):
    domain: str = Field("localhost", description="SIP domain of room URIs (sip:<room>@<domain>)")
    bind_host: str = Field(
        "127.0.0.1",
        description="Address the SIP and RTP sockets bind to; 0.0.0.0 = every IPv4 interface "
        "(then advertise_host is required)",
    )
    advertise_host: str = Field(
        "",
        description="Address callers are told to reach this node at: SIP Contact and Via, SDP "
        "c= (RTP), and the 302 targets of its workers and rooms; empty = bind_host. Behind NAT "
        "or a load balancer: the public address",
    )
    advertise_by_node: dict[str, str] = Field(
        default_factory=dict,
        description="advertise_host per replica, keyed by state.node_id (e.g. one load "
        "balancer address per StatefulSet pod); the entry of this node wins",
    )
    port: Port = Field(5060, description="Public (front) SIP port for UDP and TCP")
    tls_port: Port = Field(5061, description="SIP over TLS port (when a certificate is set)")
    transports: list[Transport] = Field(
        default_factory=lambda: [Transport.UDP, Transport.TCP],
        min_length=1,
        description="Transports to listen on",
    )
    tls_certificate: Path | None = Field(None, description="PEM certificate chain for SIP TLS")
    tls_private_key: Path | None = Field(None, description="PEM private key for SIP TLS")
    tls_min_version: Literal["1.2", "1.3"] = Field(
        "1.2",
        description="Oldest TLS version SIP over TLS accepts (OpenSSL 3; TLS 1.3 is always "
        "offered); '1.3' refuses TLS 1.2 clients",
    )
    srtp: Literal["off", "optional", "mandatory"] = Field(
        "optional",
        description="SRTP (RFC 3711, SDES keys RFC 4568): 'optional' uses it when the caller "
        "offers it, 'mandatory' refuses calls without it (488), 'off' never uses it. Keys "
        "travel in the SDP, so only SIP over TLS keeps them secret (docs/security.md)",
    )
    rtp_port_start: Port = Field(20000, description="First RTP port of the media range")
    rtp_port_count: int = Field(2000, ge=4, description="Number of RTP ports in the range")
    session_expires: int = Field(
        90,
        description="RFC 4028 session timer on every call, in seconds (90 = the RFC's minimum): "
        "a phone that supports timers refreshes within half of it, or expects our refresh, and "
        "drops a call whose worker died within this bound; calls whose phone does not answer "
        "our refreshes are ended. 0 = PJSIP's default (timers only when the phone asks, 1800 s)",
    )

    @field_validator("session_expires")
    @classmethod
    def _rfc4028_minimum(cls, value: int) -> int:
        if value and value < 90:
            raise ValueError("must be 0 (off) or at least 90 s (RFC 4028 Min-SE)")
        return value

    limits: SipLimits = Field(default_factory=SipLimits)
    dialout: DialOutSettings = Field(default_factory=DialOutSettings)

    @model_validator(mode="after")
    def _never_dial_ourselves(self) -> Self:
        trunk = self.dialout.trunk_domain.lower()
        if trunk and trunk in {self.domain.lower(), self.bind_host.lower()}:
            raise ValueError("dialout.trunk_domain is this bridge's own SIP domain: numbers "
                             "would ring our own rooms (a room may be named like a number)")
        return self
    @field_validator("advertise_host")
    @classmethod
    def _advertisable(cls, value: str) -> str:
        return _advertisable(value)

    @property
    def advertised(self) -> str:
        """The address put into SIP headers, SDP and redirects ("" = unknown: the bind
        address is a wildcard and nothing was configured)."""
        if self.advertise_host:
            return self.advertise_host
        return "" if self.bind_host.strip() in _WILDCARDS else self.bind_host

    @model_validator(mode="after")
    def _tls_needs_files(self) -> Self:
        if Transport.TLS in self.transports and not (self.tls_certificate and self.tls_private_key):
            raise ValueError("transport 'tls' needs tls_certificate and tls_private_key")
        if (self.tls_certificate is None) != (self.tls_private_key is None):
            raise ValueError("tls_certificate and tls_private_key go together")
        return self


def available_cpus(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota (a
    container's CPU limit), at least 1."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    count = cpus or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            count = min(count, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, count)


class WorkerSettings(_Section):
    pool_size: int | None = Field(
        None,
        ge=1,
        le=256,
        description="SIP media worker processes per node; unset = workers_per_core × the CPUs "
        "available (affinity, cgroup quota)",
    )
    workers_per_core: float = Field(
        1.0,
        gt=0,
        le=8,
        description="Workers per available CPU when pool_size is unset (docs/capacity.md: a "
        "full worker of 48 calls takes about a third of a core)",
    )
    calls_per_worker: int = Field(
        48,
        ge=1,
        le=240,
        description="Call slots per worker process. Node capacity = workers × this. What limits "
        "it is a worker's 20 ms media tick (≈ 0.14 ms per G.711 call, 0.2 ms per opus call), "
        "which must end before the mixer's next tick (docs/capacity.md); our PJSIP build "
        "allows up to 240 (256 pjsua calls, 16 kept for INVITEs being refused or redirected)",
    )
    narrowband_workers: int = Field(
        0,
        ge=0,
        le=256,
        description="How many of the pool's workers run their pjmedia conference bridge at "
        "8 kHz instead of 48 kHz (worker 0, the front, first; ≥ the pool size = all). The "
        "front sends each G.711 caller to a narrowband worker and every wideband caller (opus, "
        "G.722, late offer) to a wideband one while they have room, spilling to any worker "
        "otherwise. A G.711 leg on a narrowband worker is never resampled (about half its CPU, "
        "docs/capacity.md); a wideband caller who spills onto one is heard and hears at 8 kHz "
        "(telephone band). 0 = every caller full band, no redirect for the codec: set it to "
        "the G.711 share of the pool (e.g. pool size - 1 for a node fed by G.711 trunks)",
    )
    base_port: Port | None = Field(
        None,
        description="SIP port of worker 1 (worker i listens on base_port + 2(i-1), TLS +1); "
        "unset = free loopback ports chosen at start. Worker 0 is the front on sip.port",
    )
    media_timeout: float = Field(
        30.0, ge=0, description="Hang up a call after this many seconds without RTP (0 = never)"
    )
    retry_after: int = Field(
        30, ge=0, description="Retry-After seconds on 486/503 when the node is full"
    )
    hooks: list[str] = Field(
        default_factory=lambda: [
            "bridge.sip.evsub:worker_hook",
            "bridge.sip.unhandled:worker_hook",  # 481/405/501 instead of silence
        ],
        description="'package.module:function' called in each worker on the pjsua2 thread "
        "after start-up (e.g. the conference event package)",
    )
    drain_timeout: float = Field(
        900.0,
        ge=0,
        description="On SIGTERM, seconds to let calls in progress end while new ones get 503 "
        "(a second SIGTERM or SIGINT stops at once; 0 = no drain)",
    )
    pjsip_log_level: int = Field(1, ge=0, le=6, description="PJSIP log level in workers")
    media_clock: Literal["aligned", "pjmedia"] = Field(
        "aligned",
        description="'aligned': each worker drives its pjmedia conference bridge from its own "
        "SCHED_FIFO thread on the node-wide 20 ms grid of CLOCK_MONOTONIC, and the mixer ticks "
        "mixer_phase_ms later, so a frame crosses the rings in exactly one tick (docs/capacity.md)"
        "; 'pjmedia': pjmedia's null sound device clock at an arbitrary phase (the old design)",
    )
    mixer_phase_ms: float = Field(
        10.0,
        gt=0,
        lt=20,
        description="With media_clock='aligned': the mixer ticks this long after the workers; "
        "the margin on both sides for wake-up lateness",
    )
    ring_reserve: int = Field(
        0,
        ge=0,
        le=4,
        description="Cushion frames each ring waits for before it plays (+20 ms each, per "
        "direction); 0 with aligned clocks, 1 for the old unaligned design",
    )
    adaptive_cushion: float = Field(
        10.0,
        ge=0,
        le=600,
        description="Seconds a ring keeps the 20 ms backlog a late frame leaves behind, after "
        "an under-run, instead of trimming it at the next pause: +20 ms only on legs that were "
        "just late, far fewer lost frames on a busy box (docs/capacity.md); 0 = off",
    )
    main_thread_priority: int = Field(
        5,
        ge=0,
        le=99,
        description="SCHED_FIFO priority of each worker's pjsua2 thread when permitted (0 = "
        "normal scheduling): a preempted GIL holder delays the media clock by a CFS slice",
    )
    media_quality: int = Field(
        4,
        ge=1,
        le=10,
        description="pjsua media quality; it selects the resampler between 8 kHz codecs and "
        "the 16 kHz bridge, which is most of a worker's CPU: 3-4 small sinc filter, 5-10 "
        "large one (PJSIP's default 8, about 2x the CPU per call), 1-2 linear",
    )
    bye_on_worker_death: bool = Field(
        True,
        description="When a worker dies, the supervisor sends BYE (Reason: SIP;cause=500) for "
        "each of its confirmed UDP calls from another port of the same address, so phones "
        "without session timers hang up at once (docs/reliability.md); TCP/TLS calls are "
        "not reached. Off = those phones keep the dead call until their user hangs up",
    )
    orphan_grace: float = Field(
        30.0,
        ge=0,
        le=600,
        description="Seconds the mixer and the SIP workers carry on once their supervisor is "
        "gone (killed, crashed), so callers keep hearing each other while it is restarted. A "
        "returning supervisor ends them cleanly first (every call gets a BYE, callers redial); "
        "if none returns they end by themselves after this long. During it new calls get 503 "
        "with Retry-After. 0 = they end with the supervisor",
    )
    runtime_dir: Path | None = Field(
        None,
        description="Where the supervisor records its mixer's and workers' pids "
        "(sipmuc-<node_id>.children.json), so that a supervisor restarted after a crash "
        "ends the ones still running before it binds the same ports; must outlive the "
        "supervisor (the chart's /tmp emptyDir does). Unset = the system's temporary "
        "directory ($TMPDIR or /tmp)",
    )
    core_dump_max_mb: int = Field(
        0,
        ge=0,
        le=65536,
        description="Let a crashing worker dump core up to this size (RLIMIT_CORE, within the "
        "hard limit; where the file goes is the kernel's core_pattern, a relative one is the "
        "node's working directory); the crash report then carries gdb's native backtrace when "
        "gdb is installed. 0 = the inherited limit (usually no cores). The last Python stacks "
        "of a crashed worker are always logged (faulthandler)",
    )
    stats_interval: float = Field(
        5.0,
        ge=0,
        description="Seconds between each worker's media health reports to the pool (clock "
        "lateness, pjmedia jitter buffer counters, real-time scheduling): exported in "
        "/metrics and read by benchmarks/sip_capacity.py; 0 = off",
    )
    jb_init_ms: int = Field(
        -1,
        ge=-1,
        le=1000,
        description="pjmedia jitter buffer initial prefetch (-1 = PJSIP default)",
    )
    jb_min_pre_ms: int = Field(
        -1,
        ge=-1,
        le=1000,
        description="pjmedia jitter buffer minimum prefetch (-1 = PJSIP default)",
    )
    jb_max_pre_ms: int = Field(
        -1,
        ge=-1,
        le=1000,
        description="pjmedia jitter buffer maximum prefetch (-1 = PJSIP default)",
    )
    jb_max_ms: int = Field(
        -1, ge=-1, le=5000, description="pjmedia jitter buffer size (-1 = PJSIP default, 500 ms)"
    )

    @property
    def cushion_hold_ticks(self) -> int:
        """``adaptive_cushion`` in mixer ticks (mixer.rings counts ticks, not seconds)."""
        return round(self.adaptive_cushion / TICK_SECONDS)

    def resolved_pool_size(self) -> int:
        """``pool_size``, or ``workers_per_core`` × :func:`available_cpus` (at least 1)."""
        if self.pool_size is not None:
            return self.pool_size
        return max(1, round(self.workers_per_core * available_cpus()))


class RedisSettings(_Section):
    _SECRET_FILES: ClassVar[dict[str, str]] = {
        "url": "url_file",
        "password": "password_file",
        "sentinel_password": "sentinel_password_file",
    }

    url: SecretStr | None = Field(
        None,
        description="redis:// or rediss:// URL; unset (and no sentinels) = embedded Redis "
        "(single node only)",
    )
    url_file: Path | None = Field(None, description="File holding url (instead of url)")
    password: SecretStr | None = Field(
        None,
        description="Password of the Redis server(s), when it is not in url (and for the "
        "servers Sentinel names)",
    )
    password_file: Path | None = Field(
        None, description="File holding password (instead of password)"
    )
    sentinels: list[str] = Field(
        default_factory=list,
        description="Redis Sentinel addresses 'host:port' (instead of url): the bridge asks "
        "them for the current primary of sentinel_service and follows failovers by itself",
    )
    sentinel_service: str = Field(
        "mymaster", min_length=1, description="Name of the monitored primary in Sentinel"
    )
    sentinel_password: SecretStr | None = Field(
        None, description="Password of the Sentinels themselves (requirepass in sentinel.conf)"
    )
    sentinel_password_file: Path | None = Field(
        None, description="File holding sentinel_password (instead of sentinel_password)"
    )
    sentinel_db: int = Field(0, ge=0, description="Database number on the Sentinel's primary")
    sentinel_tls: bool = Field(
        False, description="TLS to the primary and replicas named by Sentinel (rediss)"
    )
    replica_acks: int = Field(
        0,
        ge=0,
        description="Replicas that must hold each moderation write before it counts as done "
        "(Redis WAIT): with 1 and Sentinel, a failover never loses an acknowledged mute, ban "
        "or role; a write not acknowledged in time is queued and replayed. 0 = don't wait",
    )
    replica_ack_timeout: float = Field(
        0.5, gt=0, description="Seconds to wait for replica_acks before queueing the write"
    )
    embedded_dir: Path = Field(
        Path("./var/redis"), description="Data directory of the embedded Redis"
    )

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        _check_url_scheme(value.get_secret_value())
        return value

    @field_validator("sentinels")
    @classmethod
    def _host_ports(cls, value: list[str]) -> list[str]:
        for item in value:
            host, sep, port = item.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{item!r} is not host:port")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if self.url is not None:
            _check_url_scheme(self.url.get_secret_value())  # also when read from url_file
            if self.sentinels:
                raise ValueError("set either url or sentinels, not both")
        return self

    @property
    def mode(self) -> Literal["url", "sentinel", "embedded"]:
        if self.sentinels:
            return "sentinel"
        return "url" if self.url is not None else "embedded"

    def effective_url(self) -> str | None:
        """``url`` with ``password`` filled in when the URL carries none."""
        if self.url is None:
            return None
        url = self.url.get_secret_value()
        if self.password is None or url.startswith("unix:"):
            return url
        parts = urlsplit(url)
        if parts.password:
            return url
        user = quote(parts.username or "", safe="")
        secret = quote(self.password.get_secret_value(), safe="")
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{user}:{secret}@{host}"))


class StateSettings(_Section):
    """Moderation state in Redis (bridge.state): keys, timeouts, leases, outbox."""

    key_prefix: str = Field(
        "sipmuc",
        pattern=r"^[A-Za-z0-9_.-]{1,40}$",
        description="Prefix of every Redis key (several deployments may share one Redis)",
    )
    node_id: str = Field(
        "",
        description="This replica's name in room leases; empty = <hostname>-<sip.port>, stable "
        "across restarts so that a restarted node takes its own rooms back at once",
    )
    redirect_contact: str | None = Field(
        None,
        description="Contact that other replicas send in 302 for rooms this node owns, with "
        "'{room}' for the room, e.g. 'sip:{room}@10.0.0.5:5060'; unset = "
        "sip:{room}@<sip.advertise_host>:<sip.port>",
    )
    lease_ttl: float = Field(
        10.0,
        gt=0,
        description="Seconds a room lease lives without renewal: a dead owner's rooms are "
        "taken over by another replica within this time (renewed every ttl/3)",
    )
    op_timeout: float = Field(
        1.0,
        gt=0,
        description="Seconds one Redis operation may take before Redis counts as unavailable",
    )
    event_ttl: float = Field(
        86400.0,
        gt=0,
        description="Seconds an applied event id is remembered (duplicates within it are no-ops)",
    )
    change_log_length: int = Field(
        1000, ge=10, description="Approximate length of each room's change log stream"
    )
    outbox_path: Path | None = Field(
        None,
        description="JSON-lines file for changes queued while Redis is down (survives a "
        "bridge restart); unset = memory only",
    )
    outbox_max: int = Field(
        10000, ge=1, description="Queued changes at most while Redis is down (then refused)"
    )
    catch_up_interval: float = Field(
        1.0, gt=0, description="Seconds between attempts to write queued changes"
    )


class DigestAlgorithm(StrEnum):
    SHA256 = "SHA-256"
    MD5 = "MD5"


class DigestAccountSettings(_Section):
    """One SIP account: HA1 = H(user:realm:password) per algorithm, never the password
    (``sipmuc-bridge ha1 USER`` prints these lines)."""

    ha1_sha256: str = Field("", description="SHA-256 HA1 (RFC 8760), 64 hex digits")
    ha1_md5: str = Field("", description="MD5 HA1 for phones without SHA-256, 32 hex digits")

    @model_validator(mode="after")
    def _hex(self) -> Self:
        for name, size in (("ha1_sha256", 64), ("ha1_md5", 32)):
            value = getattr(self, name).strip().lower()
            if value and (len(value) != size or any(c not in "0123456789abcdef" for c in value)):
                raise ValueError(f"{name} must be {size} hex digits (an HA1, not a password)")
            setattr(self, name, value)
        if not self.ha1_sha256 and not self.ha1_md5:
            raise ValueError("an account needs ha1_sha256 and/or ha1_md5")
        return self


class IdentitySettings(_Section):
    """Who a caller is (docs/security.md): SIP digest accounts, trusted peers whose
    P-Asserted-Identity counts, what a node admits, and caller ↔ JID bindings."""

    trusted_bindings: dict[str, str] = Field(
        default_factory=dict,
        description="Trusted mapping caller identity (sip:user@realm of an account, or an "
        "asserted URI) → JID; only authenticated or asserted callers are ever bound",
    )
    realm: str = Field("", description="Digest realm of the accounts (default: sip.domain)")
    accounts: dict[str, DigestAccountSettings] = Field(
        default_factory=dict,
        description="SIP digest accounts user → {ha1_sha256, ha1_md5} (stored as HA1, never "
        "plain); a caller whose From names an account must authenticate",
    )
    trusted_peers: list[str] = Field(
        default_factory=list,
        description="Addresses/CIDRs whose P-Asserted-Identity is believed (your PBX or SBC; "
        "the chart's Kamailio only if it authenticates callers and sets PAI itself); the "
        "header is ignored from anyone else",
    )
    admit: AdmitMode = Field(
        AdmitMode.OPEN,
        description="open: everyone may call (unverified callers are marked); "
        "verified-only: unverified callers get 401 (when accounts exist) or 403",
    )
    room_admit: dict[str, AdmitMode] = Field(
        default_factory=dict, description="Per-room override of admit: room name → mode"
    )
    digest_algorithms: list[DigestAlgorithm] = Field(
        default_factory=lambda: [DigestAlgorithm.SHA256, DigestAlgorithm.MD5],
        min_length=1,
        description="Digest challenges offered, in preference order (RFC 8760: SHA-256 "
        "first; some old clients answer only the first one)",
    )
    nonce_ttl_s: int = Field(
        300, ge=10, le=3600, description="Seconds a digest nonce stays valid (stateless)"
    )

    @field_validator("trusted_peers")
    @classmethod
    def _peers(cls, value: list[str]) -> list[str]:
        TrustedPeers.parse(value)  # raises a clear ValueError on a bad entry
        return value

    @field_validator("room_admit")
    @classmethod
    def _rooms(cls, value: dict[str, AdmitMode]) -> dict[str, AdmitMode]:
        return {room.lower(): mode for room, mode in value.items()}


class LogSettings(_Section):
    format: LogFormat = Field(LogFormat.AUTO, description="json, console or auto")
    level: LogLevel = Field(LogLevel.INFO, description="debug, info, warning or error")


class HttpSettings(_Section):
    host: str = Field("127.0.0.1", description="Bind address of health and metrics endpoints")
    port: Port = Field(8080, description="Port of /healthz, /readyz and /metrics")


class Settings(BaseSettings):
    """Every knob of a node. Env: ``SIPMUC_<SECTION>__<KEY>``; file: ``[section] key = …``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    demo: bool = Field(
        False,
        description="Demo profile: allows an empty component secret and a remote Redis "
        "without password",
    )
    rooms: list[str] = Field(
        default_factory=list,
        description="Conferences linked at start-up: name → sip:<name>@<sip.domain> and "
        "<name>@<xmpp.muc_service> (links are kept in Redis; owners add more with !link)",
    )
    xmpp: XmppSettings = Field(default_factory=XmppSettings)
    sip: SipSettings = Field(default_factory=SipSettings)
    workers: WorkerSettings = Field(default_factory=WorkerSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    identity: IdentitySettings = Field(default_factory=IdentitySettings)
    log: LogSettings = Field(default_factory=LogSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)

    @model_validator(mode="after")
    def _stable_node_id(self) -> Self:
        # Not hostname-pid: a restarted node would see its own old leases as another
        # replica's and redirect callers to itself until they expire.
        if not self.state.node_id:
            self.state.node_id = f"{socket.gethostname()}-{self.sip.port}"
        mine = self.sip.advertise_by_node.get(self.state.node_id, "").strip()
        if mine:
            self.sip.advertise_host = _advertisable(mine)
        if self.sip.bind_host.strip() in _WILDCARDS and not self.sip.advertise_host:
            raise ValueError(
                f"sip.bind_host {self.sip.bind_host!r} listens on every interface, so it says "
                "nothing about where callers reach this node: set sip.advertise_host "
                "(SIPMUC_SIP__ADVERTISE_HOST), e.g. the pod or node IP or the public address "
                "in front of it"
            )
        return self

    @model_validator(mode="after")
    def _peers_are_trusted_sources(self) -> Self:
        """A PBX whose P-Asserted-Identity we believe carries many callers: the per-source
        caps would otherwise cap the whole PBX like one caller."""
        limits = self.sip.limits
        extra = [p for p in self.identity.trusted_peers if p not in limits.trusted_sources]
        if extra:
            limits.trusted_sources = [*limits.trusted_sources, *extra]
        return self

    @model_validator(mode="after")
    def _secret_required(self) -> Self:
        if not self.demo and not self.xmpp.secret.get_secret_value():
            raise ValueError("xmpp.secret is required (set SIPMUC_XMPP__SECRET) unless demo = true")
        return self

    @model_validator(mode="after")
    def _redis_password_required(self) -> Self:
        """Redis holds the moderation truth: whoever can write it can lift their own ban. A
        Redis other hosts can reach must ask for a password (outside the demo); one on
        loopback or a unix socket is reachable from this host only (docs/security.md)."""
        if self.demo or self.redis.mode == "embedded":
            return self
        if self.redis.mode == "sentinel":
            if self.redis.password is None and not all(
                _is_loopback(item.rpartition(":")[0]) for item in self.redis.sentinels
            ):
                raise ValueError(
                    "redis.password is required with sentinels off loopback (set "
                    "SIPMUC_REDIS__PASSWORD or SIPMUC_REDIS__PASSWORD_FILE), unless demo = true"
                )
            return self
        url = urlsplit(self.redis.effective_url() or "")
        host = (url.hostname or "").lower()
        if url.scheme == "unix" or url.password or host in _LOOPBACK or host.startswith("127."):
            return self
        raise ValueError(
            "redis.url must carry a password (redis://:PASSWORD@host:6379/0, better rediss://) "
            "when Redis is not on loopback, unless demo = true"
        )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _toml_path.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


class _TomlPath:
    """The TOML file of the current load (pydantic-settings reads sources from the class)."""

    def __init__(self) -> None:
        self._path: Path | None = None

    def get(self) -> Path | None:
        return self._path

    def set(self, path: Path | None) -> None:
        self._path = path


_toml_path = _TomlPath()


def _check_url_scheme(url: str) -> None:
    if url.split("://", 1)[0] not in {"redis", "rediss", "unix"}:
        raise ValueError("must start with redis://, rediss:// or unix://")


def _advertisable(value: str) -> str:
    value = value.strip()
    if value in _WILDCARDS - {""}:
        raise ValueError("a wildcard address cannot be advertised: give the address callers reach")
    if value and not _is_host(value):
        raise ValueError(f"{value!r} is not a host name or IP address (no scheme, no port)")
    return value


def _is_host(value: str) -> bool:
    try:
        ip_address(value.strip("[]"))
    except ValueError:
        return bool(_HOSTNAME.match(value))
    return True


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    return host in _LOOPBACK or host.startswith("127.")


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown setting"
        if loc:
            env = ENV_PREFIX + "__".join(loc).upper()
            lines.append(f"  {'.'.join(loc)} ({env}): {message}")
        else:
            lines.append(f"  {message}")
    return "invalid configuration:\n" + "\n".join(lines)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Load and validate; raises ConfigError with one line per bad key.

    ``config_file`` defaults to ``$SIPMUC_CONFIG`` when that is set.
    """
    if config_file is None and os.environ.get(CONFIG_FILE_ENV):
        config_file = Path(os.environ[CONFIG_FILE_ENV])
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"configuration file not found: {config_file}")
    _toml_path.set(config_file)
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None
    except ValueError as error:  # TOML syntax errors surface as ValueError subclasses
        raise ConfigError(f"cannot read {config_file}: {error}") from None
    finally:
        _toml_path.set(None)


def redacted(settings: Settings) -> dict[str, Any]:
    """Settings as plain data with every secret masked, safe to log."""
    return settings.model_dump(mode="json")  # SecretStr dumps as '**********'
