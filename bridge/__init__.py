"""SIP ⇄ XMPP MUC conference bridge (RFC 7081 CUSAX multi-party)."""

__version__ = "0.1.0"
