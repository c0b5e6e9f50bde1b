"""XMPP side of the bridge: one XEP-0114 component, a control occupant and SIP-caller puppets.

How the supervisor drives it::

    component = BridgeComponent(settings.xmpp)
    await component.start()                      # XmppUnavailable at start-up; then reconnects
    room = await component.link_room("weekly@conference.example.org",
                                     "sip:weekly@sip.example.org",
                                     legs=legs_still_connected, sink=on_room_event)
    await room.caller_joined(leg_joined)         # LegJoined  → puppet joins (PuppetJoined)
    outcome = await room.relay_from_sip(sip_msg) # SipMessageReceived → groupchat (RelayOutcome)
    await room.set_voice(leg_id, False)          # SIP-side mute → role visitor (by_bridge=True)
    await room.caller_left(leg_left)             # LegLeft → puppet leaves (PuppetLeft)
    await component.unlink_room(room_jid)        # withdraw the URI, leave
    await component.close()                      # shutdown: puppets leave, then the control

Room-side output (``sink`` callback, or ``async for event in room.events()``):
``SendSipMessage`` (chat → one caller) and the events of ``bridge.xmpp.events``.
Pure helpers: ``forms`` (room config plan), ``muc`` (presence parsing), ``jids`` (puppet JIDs),
``ratelimit``; ``bridge.protocol.nicks`` and ``bridge.protocol.stox``.
"""
