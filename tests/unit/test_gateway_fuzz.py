"""Fuzzing the XML/TCP parsers with hypothesis: whatever arrives, the only outcomes are a request,
a clear error (FrameError / RequestError / Rejected children), and a reply that is valid XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.gateway.xml import reply
from services.gateway.xml.framing import FrameError, FrameReader
from services.gateway.xml.request import (
    CreateRequest,
    Rejected,
    RequestError,
    TransactionsRequest,
    parse_request,
)

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SEEDS = [
    b'<create><account id="1" balance="100"/><symbol sym="X"><account id="1">5</account>'
    b"</symbol></create>",
    b'<transactions id="1"><order sym="X" amount="-5.5" limit="1.25"/><query id="1"/>'
    b'<cancel id="1"/></transactions>',
    b'<?xml version="1.0" encoding="UTF-8"?><transactions account="2"><order/></transactions>',
    b'<!DOCTYPE a [<!ENTITY e "x">]><create>&e;</create>',
]


def _answer(body: bytes) -> bytes:
    """The pure part of answering: a RequestError becomes the error document."""
    try:
        request = parse_request(body)
    except RequestError as exc:
        assert str(exc)
        return reply.document_error(str(exc))
    assert isinstance(request, CreateRequest | TransactionsRequest)
    children = [reply.error(i.attrs, i.message) for i in request.items if isinstance(i, Rejected)]
    return reply.results(children)


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "dup"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[at : at + draw(st.integers(1, 8))]
        elif op == "insert":
            data[at:at] = draw(st.binary(max_size=8))
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 20))]
    return bytes(data)


@FUZZ
@given(st.one_of(mutated(), st.binary(max_size=300), st.text(max_size=200).map(str.encode)))
def test_any_body_gets_a_request_or_a_clear_error_and_a_valid_reply(body):
    ET.fromstring(_answer(body))  # the reply itself is always well-formed XML


@st.composite
def xmlish_attrs(draw) -> bytes:
    values = st.text(
        st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='"&<'), max_size=12
    )
    order = f'<order sym="{draw(values)}" amount="{draw(values)}" limit="{draw(values)}"/>'
    query = f'<query id="{draw(values)}"/>'
    return f'<transactions id="{draw(values)}">{order}{query}</transactions>'.encode()


@FUZZ
@given(xmlish_attrs())
def test_any_attribute_values_are_validated_per_child(body):
    request = parse_request(body)
    assert len(request.items) == 2
    ET.fromstring(_answer(body))


@FUZZ
@given(st.binary(max_size=400), st.lists(st.integers(1, 50), max_size=30))
def test_the_frame_reader_never_fails_but_with_a_frame_error(stream, cuts):
    reader = FrameReader(max_body=200)
    position = 0
    for size in [*cuts, len(stream)]:
        reader.feed(stream[position : position + size])
        position += size
        try:
            while (frame := reader.next()) is not None:
                assert 0 < len(frame.body) <= 200
        except FrameError as exc:
            assert exc.message
            if exc.fatal:
                return
    problem = reader.truncated()
    assert problem is None or problem.message


@FUZZ
@given(st.lists(st.sampled_from(SEEDS), min_size=1, max_size=5), st.integers(1, 40))
def test_well_framed_requests_come_out_whole_however_they_are_cut(bodies, chunk):
    stream = b"".join(b"%d\n%s" % (len(b), b) for b in bodies)
    reader = FrameReader(10_000)
    got = []
    for at in range(0, len(stream), chunk):
        reader.feed(stream[at : at + chunk])
        while (frame := reader.next()) is not None:
            got.append(frame.body)
    assert got == bodies
    assert reader.truncated() is None
