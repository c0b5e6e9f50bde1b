"""SIP MESSAGE ⇄ XMPP message mapping (draft-ietf-stox-im-01, seeds/), pure.

Tables 1 and 2 of the draft: ``<body/>`` ⇄ MESSAGE body, ``<subject/>`` ⇄ ``Subject``,
``<thread/>`` ⇄ ``Call-ID``, ``xml:lang`` ⇄ ``Content-Language``. §5: ``text/plain`` MUST be
carried; ``text/html`` is turned into plain text here (XHTML-IM is not produced, see the
issue note). In a room the sender is an occupant, so the chat nick is written into the SIP
text (``nick: text``) where a phone shows nothing but the body, and also passed as
``sender_display`` for workers that can put it in the From display name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

from bridge.core.events import SendSipMessage, SipMessageReceived

# Typing notifications (RFC 3994) are not messages: nothing to relay, and not an error.
IGNORED_CONTENT_TYPES = frozenset({"application/im-iscomposing+xml"})
_LANG_RE = re.compile(r"^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*$")
_ME_PREFIX = "/me "


class UnsupportedContent(ValueError):
    """The MESSAGE body's type cannot be shown in a chat room (SIP answer: 415)."""

    def __init__(self, content_type: str) -> None:
        super().__init__(f"unsupported message content type {content_type!r}")
        self.content_type = content_type


@dataclass(frozen=True, slots=True)
class ChatText:
    """The XMPP side of one instant message: the fields of a ``<message/>`` we map."""

    body: str
    subject: str = ""
    thread: str = ""
    lang: str = ""
    correction: bool = False  # XEP-0308: replaces the sender's previous message


def media_type(content_type: str) -> str:
    """``Text/HTML; charset=utf-8`` → ``text/html``."""
    return content_type.split(";", 1)[0].strip().lower()


class _TextExtractor(HTMLParser):
    _BLOCKS = frozenset(
        {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre"}
    )
    _SKIP = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0
        self._pending_href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")
            if tag == "li":
                self.parts.append("• ")
        elif tag == "a":
            href = dict(attrs).get("href")
            if href:
                self._pending_href = href

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCKS:
            self.parts.append("\n")
        elif tag == "a":
            href = self._pending_href
            if href and href not in "".join(self.parts[-3:]):
                self.parts.append(f" <{href}>")
            self._pending_href = None

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Readable plain text from an HTML fragment: tags dropped, blocks on their own lines."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{2,}", "\n", text).strip()


def clean_language(tag: str) -> str:
    """A BCP 47-shaped tag (first of a Content-Language list), else ''."""
    first = tag.split(",", 1)[0].strip()
    return first if _LANG_RE.match(first) else ""


def thread_for_call_id(call_id: str) -> str:
    """Call-ID → ``<thread/>``, without the host part (it often carries the caller's IP)."""
    return call_id.split("@", 1)[0].strip()


def sip_text(body: str, content_type: str) -> str | None:
    """Plain text of a MESSAGE body; None for bodies that are not messages (typing).

    Raises UnsupportedContent for other types, so the SIP side can answer 415.
    """
    kind = media_type(content_type or "text/plain")
    if kind == "text/plain":
        return body
    if kind in {"text/html", "application/xhtml+xml"}:
        return html_to_text(body)
    if kind in IGNORED_CONTENT_TYPES:
        return None
    raise UnsupportedContent(kind)


# XML 1.0 Char production: a SIP body may carry NUL, BEL, ESC …; sent raw they make the
# component's stream not well-formed and the XMPP server closes it (every room of the node).
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot carry."""
    return _NOT_XML_CHAR.sub("", text)


def sip_to_xmpp(message: SipMessageReceived) -> ChatText | None:
    """Table 2: a SIP MESSAGE as the fields of a groupchat message (None: nothing to send)."""
    text = sip_text(message.body, message.content_type)
    if text is None:
        return None
    text = xml_safe(text.replace("\r\n", "\n")).strip()
    if not text:
        return None
    return ChatText(
        body=text,
        subject=xml_safe(message.subject).strip(),
        thread=xml_safe(thread_for_call_id(message.call_id)),
        lang=clean_language(message.language),
    )


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _cut(text: str, max_bytes: int) -> tuple[str, str]:
    """Split ``text`` at most ``max_bytes`` in, preferring a line break or a space."""
    if utf8_len(text) <= max_bytes:
        return text, ""
    head = text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")
    for sep in ("\n", " "):
        at = head.rfind(sep)
        if at >= len(head) // 2:
            return head[:at].rstrip(), text[at + 1 :].lstrip()
    return head, text[len(head) :]


def split_text(text: str, max_bytes: int) -> list[str]:
    """Pieces of at most ``max_bytes`` UTF-8 bytes each, cut at spaces where possible."""
    if max_bytes < 4:
        raise ValueError("max_bytes must be at least 4 (one UTF-8 character)")
    pieces: list[str] = []
    rest = text
    while rest:
        piece, rest = _cut(rest, max_bytes)
        if piece:
            pieces.append(piece)
    return pieces or [""]


def _action(body: str, nick: str) -> str | None:
    """XEP-0245 ``/me`` as ``* nick waves``."""
    if body.startswith(_ME_PREFIX):
        return f"* {nick} {body[len(_ME_PREFIX) :]}"
    return None


def xmpp_to_sip(
    chat: ChatText, *, leg_id: str, sender_nick: str, max_bytes: int
) -> list[SendSipMessage]:
    """Table 1: one groupchat message as the MESSAGE(s) to one leg, split to ``max_bytes``.

    Each part names the sender (``nick: text``, ``nick (2/3): text``) because most phones
    show only the body.
    """
    action = _action(chat.body, sender_nick)
    # A correction (XEP-0308) cannot replace a line a phone already shows: it is marked, so
    # that the caller reads it as the new version of the sender's last line.
    mark = " (correction)" if chat.correction else ""
    text = action if action is not None else chat.body
    if action is not None:
        single = f"{text}{mark}" if mark else text
    else:
        single = f"{sender_nick}{mark}: {text}"
    if utf8_len(single) <= max_bytes:
        bodies = [single]
    else:
        worst_prefix = utf8_len(f"{sender_nick}{mark} (99/99): ")
        budget = max(16, max_bytes - worst_prefix)
        pieces = split_text(text, budget)
        total = len(pieces)
        bodies = [
            f"{sender_nick}{mark} ({n}/{total}): {p}" for n, p in enumerate(pieces, start=1)
        ]
        bodies = [b if utf8_len(b) <= max_bytes else split_text(b, max_bytes)[0] for b in bodies]
    return [
        SendSipMessage(
            leg_id=leg_id,
            body=body,
            content_type="text/plain;charset=utf-8",
            subject=chat.subject if index == 0 else "",
            thread=chat.thread,
            language=chat.lang,
            sender_display=sender_nick,
        )
        for index, body in enumerate(bodies)
    ]


__all__ = [
    "IGNORED_CONTENT_TYPES",
    "ChatText",
    "UnsupportedContent",
    "clean_language",
    "html_to_text",
    "media_type",
    "sip_text",
    "sip_to_xmpp",
    "split_text",
    "thread_for_call_id",
    "utf8_len",
    "xmpp_to_sip",
]
