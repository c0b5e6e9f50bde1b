"""conference_info.parse: any bytes → a model or ConferenceInfoError, nothing else; a parsed
document renders again."""

from __future__ import annotations

import _harness
import atheris

with atheris.instrument_imports():
    from bridge.protocol.conference_info import ConferenceInfoError, parse, render

SEED = (b'<conference-info xmlns="urn:ietf:params:xml:ns:conference-info" entity="sip:a@b" '
        b'state="full" version="1"><users><user entity="sip:x@y"><endpoint entity="sip:e@y">'
        b'<media id="1"><type>audio</type><status>sendrecv</status></media></endpoint></user>'
        b'</users></conference-info>')  # fmt: skip


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeBool():  # mutate a valid document half of the time
        cut = fdp.ConsumeIntInRange(0, len(SEED))
        blob = SEED[:cut] + fdp.ConsumeBytes(64) + SEED[cut:]
    else:
        blob = fdp.ConsumeBytes(4096)
    try:
        doc = parse(blob)
    except ConferenceInfoError:
        return
    render(doc)


if __name__ == "__main__":
    _harness.run(test_one_input)
