"""The XML/TCP surface's pure parts: framing, request parsing and validation, reply rendering."""

from __future__ import annotations

import pytest

from services.gateway.xml import reply
from services.gateway.xml.framing import FrameError, FrameReader, frame, parse_length_line
from services.gateway.xml.request import (
    AddShares,
    Cancel,
    CreateRequest,
    NewAccount,
    Order,
    Query,
    Rejected,
    RequestError,
    TransactionsRequest,
    parse_request,
)


# -- framing -------------------------------------------------------------------------------------
def frames_of(data: bytes, max_body: int = 1000) -> list:
    reader = FrameReader(max_body)
    reader.feed(data)
    out = []
    while (f := reader.next()) is not None:
        out.append(f)
    return out


def test_length_line_then_body_and_the_next_request():
    out = frames_of(b"7\n<a></a>4\n<b/>")
    assert [f.body for f in out] == [b"<a></a>", b"<b/>"]
    assert not any(f.framed_reply for f in out)


def test_body_arriving_byte_by_byte():
    reader = FrameReader(100)
    got = []
    for byte in b"11\r\n<create/>\n\n":
        reader.feed(bytes([byte]))
        if (f := reader.next()) is not None:
            got.append(f.body)
    assert got == [b"<create/>\n\n"]


def test_blank_lines_between_requests_are_skipped():
    assert [f.body for f in frames_of(b"\n\r\n 4 \n<a/>")] == [b"<a/>"]


def test_framed_reply_is_asked_for_on_the_length_line():
    (f,) = frames_of(b"4 framed\n<a/>")
    assert f.framed_reply
    assert frame(b"<x/>") == b"4\n<x/>"


@pytest.mark.parametrize(
    "line, message",
    [
        (b"abc", "bad length line"),
        (b"-5", "bad length line"),
        (b"1e3", "bad length line"),
        (b"<create>", "missing length line"),
        (b"99999999", "over the limit"),
    ],
)
def test_bad_length_lines_are_fatal(line, message):
    with pytest.raises(FrameError) as err:
        parse_length_line(line, 1000)
    assert message in err.value.message and err.value.fatal


def test_a_line_with_no_newline_is_refused_once_it_is_too_long():
    reader = FrameReader(1000)
    reader.feed(b"1" * 65)
    with pytest.raises(FrameError, match="no newline"):
        reader.next()


def test_an_empty_body_is_answered_and_the_connection_goes_on():
    reader = FrameReader(100)
    reader.feed(b"2\n  4\n<a/>")
    with pytest.raises(FrameError) as err:
        reader.next()
    assert not err.value.fatal
    assert reader.next().body == b"<a/>"


def test_truncated_body_and_length_line_at_end_of_stream():
    reader = FrameReader(100)
    reader.feed(b"10\n<a/>")
    assert reader.next() is None
    assert "only 4 arrived" in reader.truncated().message
    reader = FrameReader(100)
    reader.feed(b"12")
    assert reader.next() is None
    assert "incomplete length line" in reader.truncated().message
    assert FrameReader(100).truncated() is None


# -- requests ------------------------------------------------------------------------------------
CREATE = b"""<?xml version="1.0" encoding="UTF-8"?>
<create>
  <account id="123456" balance="1000"/>
  <symbol sym="SPY">
    <account id="123456">100000</account>
    <account id="7">-5</account>
  </symbol>
  <account id="12a" balance="1"/>
  <account id="9" balance="1.0000001"/>
</create>"""


def test_create_children_in_order_with_their_own_errors():
    request = parse_request(CREATE)
    assert isinstance(request, CreateRequest)
    a, shares, negative, bad_id, precise = request.items
    assert a == NewAccount("123456", 1000 * 10**6)
    assert shares == AddShares("SPY", "123456", 100000 * 100)
    assert isinstance(negative, Rejected) and negative.attrs == (("sym", "SPY"), ("id", "7"))
    assert "negative" in negative.message
    assert isinstance(bad_id, Rejected) and "digits" in bad_id.message
    assert isinstance(precise, Rejected) and "decimal places" in precise.message


def test_symbols_must_be_alphanumeric():
    request = parse_request(
        b'<create><symbol sym="S-P"><account id="1">5</account></symbol></create>'
    )
    (item,) = request.items
    assert isinstance(item, Rejected) and item.attrs == (("sym", "S-P"), ("id", "1"))


TRANSACTIONS = b"""<transactions id="123">
  <order sym="SPY" amount="-100.5" limit="145.67"/>
  <order sym="SPY" amount="0" limit="1"/>
  <order sym="SPY" amount="abc" limit="1"/>
  <order sym="SPY" amount="1" limit="-1"/>
  <query id="1"/>
  <cancel id="2"/>
  <cancel id="x"/>
  <bogus/>
</transactions>"""


def test_transactions_children_in_order():
    request = parse_request(TRANSACTIONS)
    assert isinstance(request, TransactionsRequest) and request.account == "123"
    order, zero, nan, negative, query, cancel, bad_cancel, bogus = request.items
    assert order == Order(
        "SPY", -10050, 1456700, (("sym", "SPY"), ("amount", "-100.5"), ("limit", "145.67"))
    )
    assert "greater than zero" in zero.message
    assert "not a decimal" in nan.message
    assert negative.message.startswith("limit:")
    assert query == Query(1) and cancel == Cancel(2)
    assert bad_cancel == Rejected((("id", "x"),), "cancel needs id= a positive order id")
    assert isinstance(bogus, Rejected)


def test_the_account_variant_and_a_missing_account():
    request = parse_request(b'<transactions account="42"><query id="3"/></transactions>')
    assert request.account == "42"
    request = parse_request(b'<transactions><query id="3"/><order sym="A"/></transactions>')
    assert request.account is None
    assert all(isinstance(i, Rejected) and "id=ACCOUNT" in i.message for i in request.items)
    assert request.items[0].attrs == (("id", "3"),)


@pytest.mark.parametrize(
    "body, message",
    [
        (b"<create>", "malformed"),
        (b"<sym/>", "unknown request <sym>"),
        (b"", "malformed"),
        (b"\xff\xfe<create/>", "malformed"),
        (b"<?xml version=1.0 encoding=UTF-8?><create/>", "malformed"),
        (b"<create/>junk", "malformed"),
        (
            b'<!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><create>&b;</create>',
            "forbidden XML",
        ),
        (
            b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><create>&e;</create>',
            "forbidden XML",
        ),
        (b'<?xml version="1.0" encoding="nope"?><create/>', "XML"),
    ],
)
def test_documents_that_are_not_requests(body, message):
    with pytest.raises(RequestError, match=message):
        parse_request(body)


def test_element_count_is_capped():
    body = b"<transactions id='1'>" + b"<query id='1'/>" * 20 + b"</transactions>"
    with pytest.raises(RequestError, match="limit of 10"):
        parse_request(body, max_elements=10)


def test_text_and_comments_inside_requests_are_ignored():
    body = b'<transactions id="1"> # note <!-- c --> <query id="5"/></transactions>'
    assert parse_request(body).items == (Query(5),)


# -- replies -------------------------------------------------------------------------------------
def test_results_document_with_every_element():
    body = reply.results(
        [
            reply.created("1"),
            reply.created("1", "SPY"),
            reply.opened((("sym", "SPY"), ("amount", "-100"), ("limit", "125")), 7),
            reply.error((("id", "9"),), "no <such> order & more"),
            reply.status(1, [reply.Open(10000), reply.Executed(20000, 1250000, 1700000000)]),
            reply.canceled(3, [reply.Canceled(5050, 12), reply.Executed(1, 10001, 13)]),
            reply.status(4, []),
        ]
    ).decode()
    assert body.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<results>\n')
    assert body.endswith("</results>\n")
    assert '<created id="1"/>' in body and '<created sym="SPY" id="1"/>' in body
    assert '<opened sym="SPY" amount="-100" limit="125" id="7"/>' in body
    assert '<error id="9">no &lt;such&gt; order &amp; more</error>' in body
    assert '<open shares="100"/>' in body
    assert '<executed shares="200" price="125" time="1700000000"/>' in body
    assert '<canceled shares="50.5" time="12"/>' in body
    assert '<executed shares="0.01" price="1.0001" time="13"/>' in body
    assert '<status id="4"/>' in body


def test_attribute_values_are_escaped():
    text = reply.error((("sym", 'a"<b'),), "x")
    assert text == '<error sym="a&quot;&lt;b">x</error>'


def test_seconds_from_micros():
    assert reply.seconds(1_700_000_000_999_999) == 1_700_000_000


def test_the_parser_builds_what_elementtree_builds():
    # namespaced names as {uri}tag: not a request of this protocol
    with pytest.raises(RequestError, match=r"unknown request <\{urn:x\}transactions>"):
        parse_request(b'<transactions xmlns="urn:x" id="1"/>')
    # comments and processing instructions dropped, character references resolved
    request = parse_request(
        b'<create><!-- c --><?pi x?><symbol sym="&#88;"><account id="1">&#53;<!-- c -->'
        b"</account></symbol></create>"
    )
    assert request.items == (AddShares("X", "1", 500),)


@pytest.mark.parametrize(
    "body",
    [
        b'<!DOCTYPE a SYSTEM "http://example.com/a.dtd"><create/>',
        b'<!DOCTYPE a PUBLIC "-//x//y" "file:///etc/passwd"><create/>',
        b"<!DOCTYPE create><create/>",
    ],
)
def test_any_dtd_is_forbidden_before_it_is_read(body):
    with pytest.raises(RequestError, match=r"forbidden XML: DTDForbidden \(no DTDs or entities\)"):
        parse_request(body)


def test_an_undefined_entity_is_malformed():
    with pytest.raises(RequestError, match="malformed XML: undefined entity"):
        parse_request(b"<create>&e;</create>")
