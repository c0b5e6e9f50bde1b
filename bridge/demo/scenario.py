"""The demo's script: a running node, two phone callers and a chat user, step by step.

Every step waits for the *effect* on the other side (a puppet in the room, a NOTIFY, a leg
muted in the mixer, a line in the chat) with a generous safety timeout, and reports what it
saw. A step that does not happen fails the demo with the reason; nothing is faked.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from bridge.demo.callers import DemoCaller
from bridge.demo.chat import ChatUser
from bridge.demo.endpoints import Endpoints
from bridge.demo.talk import TalkReport
from bridge.demo.terminal import plural
from bridge.demo.view import Board, Person, Step, View, db
from bridge.demo.watcher import ConferenceWatcher, Notify, open_watcher
from bridge.logs import get_logger
from bridge.node.supervisor import Node
from bridge.protocol.conference_info import GROUPTEXTCHAT, EndpointStatus

log = get_logger(__name__)

STEP_TIMEOUT = 30.0  # safety net for a stuck step on a busy machine, not a speed target
SPEAKING = 1e-4  # -40 dBFS: clearly speech, far above line silence
ANNOUNCE_AFTER_S = 1.0  # someone new is announced once present this long (see below)


class DemoFailed(RuntimeError):
    """A step did not happen; the message says which and why."""


class Scenario:
    """Drives one demo run against a started node; see the module docstring."""

    def __init__(
        self,
        node: Node,
        *,
        alice: ChatUser,
        callers: list[DemoCaller],
        endpoints: Endpoints,
        board: Board,
        view: View,
        notify_dir: Path,
    ) -> None:
        self.node = node
        self.alice = alice
        self.callers = callers
        self.ep = endpoints
        self.board = board
        self.view = view
        self.watcher: ConferenceWatcher | None = None
        self.notify_dir = notify_dir
        notify_dir.mkdir(parents=True, exist_ok=True)
        self._talking: set[str] = set()
        self._ever_talked: set[str] = set()
        self._talk = TalkReport()
        self._present: dict[str, tuple[str, str]] = {}  # key → (name, side) announced
        self._first_seen: dict[str, float] = {}
        self._lines_seen = 0
        self.control_nick = ""  # the bridge's own occupant: not a participant

    # ---- helpers -------------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.view.line(text)

    @contextlib.asynccontextmanager
    async def step(self, title: str) -> AsyncIterator[Step]:
        step = Step(title, "running")
        self.board.steps.append(step)
        self.say(f"STEP {title} …")
        try:
            yield step
        except Exception as error:
            step.status = "failed"
            step.detail = f"{type(error).__name__}: {error}"
            self.say(f"FAILED {title}: {step.detail}")
            log.warning("demo.step_failed", step=title, exc_info=True)
            raise DemoFailed(f"{title}: {step.detail}") from error
        step.status = "done"
        self.say(f"DONE {title}: {step.detail}")

    async def until(self, predicate: Callable[[], object], what: str,
                    within: float = STEP_TIMEOUT) -> None:  # fmt: skip
        deadline = time.monotonic() + within
        while not predicate():
            for caller in self.callers:
                if caller.stopped:
                    raise DemoFailed(f"caller {caller.script.display} stopped: "
                                     f"{caller.problem()}")  # fmt: skip
            if time.monotonic() > deadline:
                raise DemoFailed(f"gave up waiting for {what} after {within:g}s")
            await asyncio.sleep(0.1)

    def leg_of(self, nick: str) -> str | None:
        room = self.node.rooms[self.ep.room].bridged
        return next((leg for leg, n in room.present_puppets.items() if n == nick), None)

    def levels(self) -> dict[int, tuple[float, float]]:
        read = getattr(self.node.pool.mixer, "levels", None)  # MixerNode has it
        return read() if callable(read) else {}

    def caller_heard(self, caller: DemoCaller, text: str) -> bool:
        """Did this SIPp caller receive a SIP MESSAGE containing ``text`` (its trace)?"""
        log = caller.workdir / "messages.log"
        with contextlib.suppress(OSError):
            return text in log.read_text(errors="replace")
        return False

    # ---- the live picture ----------------------------------------------------------------

    async def monitor(self) -> None:
        """Refresh the meeting table ten times a second; report talker changes."""
        while True:
            self.sample()
            await asyncio.sleep(0.1)

    def sample(self) -> None:
        room = self.node.rooms.get(self.ep.room)
        if room is None:
            return
        puppets = room.bridged.present_puppets
        legs = self.node.pool.legs()
        levels = self.levels()
        people: list[Person] = []
        talking_now: set[str] = set()
        for leg_id, record in sorted(legs.items()):
            nick = puppets.get(leg_id) or record.caller.display_name or leg_id
            spoken, in_mix = levels.get(record.slot, (0.0, 0.0))
            talking = leg_id in self.node.talking
            if talking:
                talking_now.add(nick)
            occupant = self.alice.occupants.get(nick)
            people.append(Person(nick, "phone", occupant.role if occupant else "(joining)",
                                 record.muted, talking, spoken, in_mix,
                                 key=f"leg:{leg_id}"))  # fmt: skip
        phone_nicks = {p.name for p in people}
        for nick, occupant in sorted(self.alice.occupants.items()):
            if nick in phone_nicks:
                continue
            role = occupant.role + (f", {occupant.affiliation}" if occupant.affiliation not in
                                    ("", "none") else "")  # fmt: skip
            people.append(Person(nick, "chat", role, key=f"chat:{nick}"))
        self.board.people = people
        levels_by_nick = {p.name: p.spoken for p in people}
        lines = self._talk.update(
            time.monotonic(), talking_now, lambda nick: db(levels_by_nick.get(nick, 0.0))
        )
        for line in lines:
            self.say(line)
        self._ever_talked |= talking_now
        self._talking = talking_now
        self._report_comings_and_goings(people)
        self._report_chat()
        self._reap_callers()
        self.board.chat = [(line.nick, line.body) for line in self.alice.lines]

    def _scripted(self) -> set[str]:
        """People the demo itself plays: its steps already tell what they do."""
        return {self.alice.nick, *(c.script.display for c in self.callers)}

    def _report_comings_and_goings(self, people: list[Person]) -> None:
        """One line when someone from outside (your phone, your chat client) comes or goes,
        and when one of the demo's own phones leaves the call.

        Someone counts as there after a second: a caller's puppet shows up in the room a
        moment after the call, and must not be mistaken for a chat user meanwhile.
        """
        now = time.monotonic()
        scripted = self._scripted()
        current = {p.key: p for p in people if p.name != self.control_nick}
        for key in list(self._first_seen):
            if key not in current:
                del self._first_seen[key]
        for key, person in sorted(current.items()):
            since = self._first_seen.setdefault(key, now)
            if key in self._present or now - since < ANNOUNCE_AFTER_S:
                continue
            self._present[key] = (person.name, person.side)
            if person.name in scripted:
                continue
            self.say(
                f"phone: {person.name} dialled in; in the room as an occupant"
                if person.side == "phone"
                else f"chat: {person.name} joined the room"
            )
        for key, (name, side) in sorted(self._present.items()):
            if key in current:
                continue
            del self._present[key]
            if side == "phone":
                self.say(f"phone: {name} left the call")
            elif name not in scripted:
                self.say(f"chat: {name} left the room")

    def _report_chat(self) -> None:
        """Each new line in the room from anyone but the demo's own chat user (whose lines
        the steps report)."""
        for line in self.alice.lines[self._lines_seen :]:
            if line.nick != self.alice.nick:
                self.say(f"chat: {line.nick}: {line.body}")
        self._lines_seen = len(self.alice.lines)

    def _reap_callers(self) -> None:
        """A demo phone whose SIPp ended (hung up by a moderator's kick, say) is waited for
        at once: no zombie process, and the screen says so."""
        for caller in self.callers:
            if caller.stopped and not caller.ended_reported:
                caller.ended_reported = True
                code = caller.sipp.proc.returncode if caller.sipp.proc else None
                self.say(f"phone: {caller.script.display}'s phone hung up (SIPp exit status "
                         f"{code})")  # fmt: skip

    def on_notify(self, notify: Notify) -> None:
        self.board.notify_count += 1
        n = self.board.notify_count
        (self.notify_dir / f"notify-{n:03d}.xml").write_bytes(notify.raw)
        state = notify.state
        people = []
        for user in (state.users or ()) if state is not None else ():
            muted = any(e.status == EndpointStatus.MUTED_VIA_FOCUS for e in user.endpoints)
            people.append((user.display_text or user.entity) + (" (muted-via-focus)" if muted
                                                                 else ""))  # fmt: skip
        chat = ""
        if state is not None and state.description is not None:
            chat = next((u.uri for u in state.description.service_uris
                         if u.purpose == GROUPTEXTCHAT), "")  # fmt: skip
        self.board.notify_summary = (f"version {state.version if state else '?'}, "
                                     f"grouptextchat {chat or '(none)'}\n"
                                     f"users: {', '.join(people) or '(none)'}")  # fmt: skip
        self.say(f"NOTIFY #{n} ({notify.subscription_state}): "
                 f"{plural(len(people), 'user')} in the conference; saved as "
                 f"{self.notify_dir.name}/notify-{n:03d}.xml")  # fmt: skip

    # ---- the script ----------------------------------------------------------------------

    async def run(self) -> None:
        monitor = asyncio.get_running_loop().create_task(self.monitor(), name="demo.monitor")
        try:
            await self._script()
        finally:
            monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await monitor

    async def _script(self) -> None:
        ep = self.ep
        async with self.step("chat user joins the room") as s:
            await self.alice.connect()
            await self.alice.join()
            s.detail = f"{self.alice.jid} is in {ep.muc_jid} as {self.alice.nick!r}"

        async with self.step("room advertises the call (disco#info)") as s:
            info = await self.alice.roominfo()
            self.board.roominfo = {k: str(v) for k, v in info.items()}
            uri = info.get("audio-video-uri")
            if not uri:
                raise DemoFailed(f"no audio-video-uri in the room's disco#info: {info}")
            s.detail = f"audio-video-uri = {uri}"

        async with self.step("conference advertises the room (SUBSCRIBE, conference-info)") as s:
            self.watcher = await open_watcher(self.on_notify)
            status = await self.watcher.subscribe(self.node.pool.front_port, ep.room)
            if status != 200:
                raise DemoFailed(f"SUBSCRIBE answered {status or 'nothing'}")
            await self.until(lambda: self.watcher is not None and self.watcher.state is not None,
                             "the first NOTIFY")  # fmt: skip
            state = self.watcher.state
            description = state.description if state is not None else None
            chat = (
                [u.uri for u in description.service_uris if u.purpose == GROUPTEXTCHAT]
                if description is not None
                else []
            )
            if not chat:
                raise DemoFailed("the conference-info document has no grouptextchat entry")
            s.detail = f"grouptextchat: {chat[0]}"

        async with self.step("two phone callers dial in (SIPp, espeak-ng speech)") as s:
            for caller in self.callers:
                caller.sipp.extra_args += ["-trace_msg", "-message_file",
                                           str(caller.workdir / "messages.log")]  # fmt: skip
                await asyncio.to_thread(caller.sipp.start)
            names = [c.script.display for c in self.callers]
            await self.until(lambda: all(self.leg_of(n) for n in names), "callers' puppets")
            await self.alice.wait_for(lambda: all(n in self.alice.occupants for n in names))
            s.detail = (
                " and ".join(names) + f" dialled {ep.sip_uri}; they sit in the room as occupants"
            )

        async with self.step("who is talking (the mixer's talker detection)") as s:
            await self.until(lambda: set(names) <= self._ever_talked, "both callers talking")
            s.detail = "talking: " + ", ".join(sorted(self._ever_talked))

        dave = next(c for c in self.callers if c.script.message)
        async with self.step("a caller's SIP MESSAGE appears in the room") as s:
            text = dave.script.message
            await self.until(
                lambda: any(line.body == text for line in self.alice.lines), "Dave's line"
            )
            line = next(line for line in self.alice.lines if line.body == text)
            s.detail = f"MESSAGE relayed: {line.nick}: {line.body}"

        async with self.step("the chat user types; the phones get it as SIP MESSAGE") as s:
            hello = "Hello phones, Alice here in the chat room."
            self.alice.say(hello)
            await self.until(lambda: all(self.caller_heard(c, hello) for c in self.callers),
                             "the callers' SIP MESSAGE")  # fmt: skip
            s.detail = "relayed to " + ", ".join(c.script.display for c in self.callers)

        carol = next(c for c in self.callers if not c.script.message).script.display
        async with self.step(f"moderator mutes {carol} from the room") as s:
            leg = self.leg_of(carol)
            assert leg is not None
            slot = self.node.pool.legs()[leg].slot
            # mute her mid-sentence, so that the drop in the mix is plain to see
            await self.until(lambda: leg in self.node.talking, f"{carol} talking")
            before = self.levels().get(slot, (0.0, 0.0))[1]
            await self.alice.set_role(carol, "visitor", "muted by Alice from the chat room")
            await self.until(lambda: self.node.pool.legs()[leg].muted, "the leg muted")
            await self.until(lambda: self.levels().get(slot, (1.0, 1.0))[1] == 0.0,
                             "silence in the mix")  # fmt: skip
            await self.until(lambda: self.levels().get(slot, (0.0, 0.0))[0] > SPEAKING,
                             f"{carol} speaking while muted")  # fmt: skip
            spoken = self.levels()[slot][0]
            self.say(f"mute effect: {carol} speaks at {db(spoken)}, in the mix: silent")
            await self.until(lambda: leg not in self.node.talking, f"{carol} no longer talking")
            await self.alice.wait_for(
                lambda: getattr(self.alice.occupants.get(carol), "role", "") == "visitor"
            )
            await self.until(lambda: self.caller_heard(self.callers[0], "mute"),
                             f"{carol}'s phone told")  # fmt: skip
            await self.until(lambda: self._muted_in_notify(carol), "muted-via-focus in a NOTIFY")
            s.detail = (f"muted: {carol}'s leg is muted in the mixer; her voice in the mix went "
                        f"from {db(before)} to silent while she still speaks ({db(spoken)}); "
                        "room role visitor; NOTIFY: muted-via-focus; her phone got a SIP "
                        "MESSAGE saying so")  # fmt: skip

    def _muted_in_notify(self, nick: str) -> bool:
        state = self.watcher.state if self.watcher else None
        for user in (state.users or ()) if state else ():
            if user.display_text == nick:
                return any(e.status == EndpointStatus.MUTED_VIA_FOCUS for e in user.endpoints)
        return False
