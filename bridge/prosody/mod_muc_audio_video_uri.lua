-- mod_muc_audio_video_uri: advertise a room's audio/video conference (RFC 7081 §4, CUSAX).
--
-- Adds a room-configuration field "audio-video-uri" (owner form, XEP-0045 §10.2) and publishes
-- its value in the room's disco#info extended form (FORM_TYPE muc#roominfo, XEP-0128), so that
-- chat clients can offer "join the call". The var is exactly "audio-video-uri" (RFC 7081's name;
-- it is not in the XSF muc#roominfo registry, hence no "muc#roominfo_" prefix).
--
-- The value lives in room._data, which Prosody persists with persistent rooms.
-- Load it on the MUC component:  Component "conference.example.org" "muc"
--                                    modules_enabled = { "muc_audio_video_uri" }
-- Shipped with the SIP-MUC bridge (bridge/prosody/); see README.md next to this file.

local FIELD = "audio-video-uri";
local MAX_LENGTH = 1024;
local ALLOWED_SCHEMES = { sip = true, sips = true, tel = true, https = true, http = true, xmpp = true };

local function get_uri(room)
	return room._data.audio_video_uri;
end

local function valid_uri(value)
	if #value > MAX_LENGTH or value:find("[%s<>\"]") then return false; end
	local scheme = value:match("^(%a[%w+.-]*):.");
	return scheme ~= nil and ALLOWED_SCHEMES[scheme:lower()] == true;
end

local function set_uri(room, value)
	if value == "" then value = nil; end
	if value ~= nil and not valid_uri(value) then
		module:log("warn", "room %s: ignoring invalid %s %q", room.jid, FIELD, value);
		return false;
	end
	if get_uri(room) == value then return false; end
	room._data.audio_video_uri = value;
	return true;
end

module:hook("muc-config-form", function(event)
	table.insert(event.form, {
		name = FIELD;
		type = "text-single";
		label = "Audio/video conference URI";
		desc = "Where to join the room's call, e.g. sip:room@example.org (RFC 7081)";
		value = get_uri(event.room) or "";
	});
end, 100-4);

module:hook("muc-config-submitted/"..FIELD, function(event)
	if set_uri(event.room, event.value or "") then
		event.status_codes["104"] = true;
	end
end);

-- A linked room is moderated (the bridge sets muc#roomconfig_moderatedroom), so that voice,
-- which the bridge mirrors to the call, means what clients show. But Prosody makes every
-- newcomer without an affiliation a visitor in a moderated room: callers (their occupants)
-- would join muted and guests could not write. In rooms that have a conference URI, they
-- come in as participants, as in ejabberd's members_by_default; moderators still revoke
-- voice. Priority 2: before Prosody's own hook (priority 1) in muc/moderated.lib.lua.
module:hook("muc-get-default-role", function(event)
	if event.affiliation == nil and get_uri(event.room) ~= nil then
		return "participant";
	end
end, 2);

module:hook("muc-disco#info", function(event)
	local uri = get_uri(event.room);
	if uri == nil then return; end
	table.insert(event.form, { name = FIELD; type = "text-single"; label = "Audio/video conference URI" });
	event.formdata[FIELD] = uri;
end);

module:log("debug", "audio-video-uri room field enabled");
