"""Issue 14, Western addresses as one span: each failure class with a negative beside it.

Street lines followed by units, cities, regions, postcodes and countries on
the next lines; a building number before the door number; US military mail;
Hungarian house numbers with their ordinal dot; and the ends of a span (a
label line, a phone line, a name line, a sentence end) that it must not cross.
"""

from __future__ import annotations

import pytest

from sealtune.data.pii import analyze


def found(text: str) -> list[str]:
    return [text[e.start:e.end] for e in analyze(text) if e.type == "ADDRESS"]


@pytest.mark.parametrize(("text", "address"), [
    # a street line, then unit, upper-case city and country with postcode on their own lines
    ("send a new one to 1987 74 Diakou Street\n Suite 680\n KISSOUSA\n Cyprus 36903? Thanks",
     "1987 74 Diakou Street\n Suite 680\n KISSOUSA\n Cyprus 36903"),
    ("ship to 14 Crown Street Kishiev Squares\n Suite 321\n LONDON\n United Kingdom 75419",
     "14 Crown Street Kishiev Squares\n Suite 321\n LONDON\n United Kingdom 75419"),
    # units, city and country after commas on one line
    ("here: 370 3911 Fourth Avenue Suite 697 Apt. 397, Mora de Rubielos, Spain 16200, and more",
     "370 3911 Fourth Avenue Suite 697 Apt. 397, Mora de Rubielos, Spain 16200"),
    # Hungarian house numbers keep their dot; a postcode sentence end does not
    ("Our offices are located at 6076 Piroska u. 97.\nPorto Alegre\n, RS\n Brazil 95828",
     "6076 Piroska u. 97.\nPorto Alegre\n, RS\n Brazil 95828"),
    ("She lives at 75956 Rákóczi út 66. Apt. 268, Beder, Denmark 56905",
     "75956 Rákóczi út 66. Apt. 268, Beder, Denmark 56905"),
    ("It is located at 5570 Kaarikatu 32 Apt. 353, Danmarkshavn, Greenland 87967. It serves food.",
     "5570 Kaarikatu 32 Apt. 353, Danmarkshavn, Greenland 87967"),
    # a prefix abbreviation's dot ends no sentence
    ("The restaurant is located at 731 ul. Miła 57 Apt. 819 Rzeszów Poland. It serves food.",
     "731 ul. Miła 57 Apt. 819 Rzeszów Poland"),
])
def test_street_address_with_its_parts_is_one_span(text: str, address: str) -> None:
    assert found(text) == [address]


@pytest.mark.parametrize(("text", "address"), [
    ("The address of Transunion is PSC 7589, Box 0572\nAPO AE 20040",
     "PSC 7589, Box 0572\nAPO AE 20040"),
    ("I'd like a taxi to Unit 7349 Box 6067\nDPO AE 99081. Please call",
     "Unit 7349 Box 6067\nDPO AE 99081"),
    ("Megan Carey\nWeber-Santana\nUSNS Bergman\nFPO AP 93757\nMobile: 0341 8387176",
     "USNS Bergman\nFPO AP 93757"),
    ("name: hyuuma t. maida\naddress: unit 4526 box 0671\ndpo ap 40902",
     "unit 4526 box 0671\ndpo ap 40902"),
])
def test_us_military_mail(text: str, address: str) -> None:
    assert found(text) == [address]


def test_military_post_line_needs_its_unit_line() -> None:
    assert found("The APO AE 20040 code is for Europe") == []


@pytest.mark.parametrize(("text", "address"), [
    # a label line after the address ("Mobile:") is not part of it
    ("Julcsa Kárpáthy\nMhealthcoach\n50668 Kiannonkatu 98 Apt. 105, ISHAM, United Kingdom\n"
     "Mobile: 03.93.92.16.85", "50668 Kiannonkatu 98 Apt. 105, ISHAM, United Kingdom"),
    # nor a phone line after the postcode
    ("Smith Ltd.\n30102 Kaevu 94\nNicosia\n, NI\n 61089\n28-64-66-98 office",
     "30102 Kaevu 94\nNicosia\n, NI\n 61089"),
    ("Knowledge Agency\n55470 72 Acheron Road Apt. 237 BUNDALAGUAH VIC\n655 437 108 office",
     "55470 72 Acheron Road Apt. 237 BUNDALAGUAH VIC"),
    # nor the name line after an address cue
    ("Billing address: Sara Schwarz\n    28245 Puruntie 82 Apt. 595\n   LAPPEENRANTA",
     "28245 Puruntie 82 Apt. 595\n   LAPPEENRANTA"),
    # nor a sentence after a street type's dot
    ("I live at 6187 Elm Ave. Could you send it?", "6187 Elm Ave."),
])
def test_address_span_stops_where_the_address_does(text: str, address: str) -> None:
    assert found(text) == [address]


def test_billing_name_stays_a_person() -> None:
    text = "Billing address: Sara Schwarz\n    28245 Puruntie 82 Apt. 595\n   LAPPEENRANTA"
    assert [text[e.start:e.end] for e in analyze(text) if e.type == "PERSON"] == ["Sara Schwarz"]


def test_street_then_a_name_is_not_one_address() -> None:
    assert found("Call 10 Pro Dr Smith today") != ["10 Pro Dr Smith"]
    assert found("We meet at 5 Main St at 3 pm") == ["5 Main St"]


@pytest.mark.parametrize(("text", "address"), [
    # no cue, no street type: the apartment or suite number marks the address
    ("Please update the billing address with Serenade Opus 420 Gairbekov Rapids\n Apt. 576\n"
     " Voormezele\n Belgium 92060 for this card", "Serenade Opus 420 Gairbekov Rapids\n Apt. 576\n"
     " Voormezele\n Belgium 92060"),
    ("Can you please validate the following? 51709 Spinatsch 94 Apt. 615 Moosleerau Switzerland",
     "51709 Spinatsch 94 Apt. 615 Moosleerau Switzerland"),
])
def test_unit_number_marks_an_address(text: str, address: str) -> None:
    assert found(text) == [address]


def test_unit_without_a_numbered_street_before_it_is_no_address() -> None:
    assert found("Our Team Suite 2 is booked") == []
    assert found("Meet in Suite 200 after lunch") == []


def test_pandas_missing_value_inside_an_address() -> None:
    text = "I now live in 633 Strada Provinciale 65 22 Suite 455\nGossau\n, nan\n 65662"
    assert found(text) == ["633 Strada Provinciale 65 22 Suite 455\nGossau\n, nan\n 65662"]
    # never as the first token, nor as part of a longer word
    assert found("lives at nan 12") == []
    assert found("lives at 12 Nanaimo Road nano") == ["12 Nanaimo Road"]
