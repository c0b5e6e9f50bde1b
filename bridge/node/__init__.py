"""The wiring of one node: the only package where SIP, XMPP, state and the mixer meet.

Everything below it is either pure (:mod:`bridge.core`, :mod:`bridge.protocol`) or one side's
I/O (:mod:`bridge.sip`, :mod:`bridge.xmpp`, :mod:`bridge.state`); here the supervisor
(:mod:`.supervisor`) routes events through the mirror engine (:mod:`.mirror`: policy, record
in Redis, actions) and carries the actions out, and the command executor runs owner commands.
"""
