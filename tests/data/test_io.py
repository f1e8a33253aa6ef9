import logging

import pandas as pd
import pytest

from pyg_cf.data import read_adjacency_list, read_edge_list
from pyg_cf.errors import DataFormatError


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_adjacency_list(tmp_path):
    df = read_adjacency_list(write(tmp_path, "train.txt", "0 1 2\n1 0\n\n2 5 6 7\n"))
    assert df["user"].tolist() == [0, 0, 1, 2, 2, 2]
    assert df["item"].tolist() == [1, 2, 0, 5, 6, 7]


@pytest.mark.parametrize(
    "text,match",
    [
        ("0 1 x\n", "line 1.*item #2.*'x'"),
        ("0 1\n3\n", "line 2.*no items"),
        ("0 -1\n", "negative"),
        ("", "empty"),
        ("0,1,2\n", r"line 1.*','"),
        ("0 1\n1 1_0\n", r"line 2.*item #1.*'1_0'"),
        ("0 99999999999999999999\n", r"line 1.*item #1.*too large"),
        ("0 1\x0c2\n3 x\n", r"line 2.*item #1.*'x'"),
    ],
)
def test_adjacency_list_errors(tmp_path, text, match):
    with pytest.raises(DataFormatError, match=match):
        read_adjacency_list(write(tmp_path, "t.txt", text))


def test_adjacency_list_missing_file(tmp_path):
    with pytest.raises(DataFormatError, match="does not exist"):
        read_adjacency_list(tmp_path / "nope.txt")


def test_adjacency_allow_empty(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="pyg_cf"):
        df = read_adjacency_list(write(tmp_path, "t.txt", "0 1\n3\n\n4\n"), allow_empty=True)
    assert len(df) == 1
    assert "t.txt: skipped 2 line(s) holding a user but no items (first: line 2)" in caplog.text


def test_edge_list(tmp_path):
    df = read_edge_list(write(tmp_path, "e.txt", "0 0 1\n0 1 1\n2 1 0.5\n"))
    assert list(df.columns) == ["user", "item", "rating"]
    assert df["rating"].tolist() == [1.0, 1.0, 0.5]
    df = read_edge_list(
        write(tmp_path, "c.csv", "user,item\na,b\n"), sep=",", header=True, numeric_ids=False
    )
    assert df.iloc[0].tolist() == ["a", "b"]


@pytest.mark.parametrize(
    "text,kw,match",
    [
        ("0 0 1\n0 x 1\n", {}, "line 2.*'item'"),
        ("0 0 1\n0 1\n", {}, "line 2.*expected 3 fields"),
        ("0 0 nan\n", {}, "line 1.*not finite"),
        ("0 0 inf\n", {}, "not finite"),
        ("user item\n0 1\n", {}, "line 1.*'user'"),
        ("0\t1\n0,2\n", {"sep": "\t"}, "line 2.*mixed"),
        ("0 0 1 5 9\n", {}, "expected 2 to 4 fields"),
        ("0 1\n2 3\n", {"header": True}, "line 1.*header=True.*data"),
        ("0,1\n2,3\n", {"header": True, "sep": ","}, "line 1.*header=True.*data"),
        ("0 1\n1_0 2\n", {}, "line 2.*'user'.*'1_0'"),
        ("0 1\n0 99999999999999999999\n", {}, "line 2.*'item'.*too large"),
        ("a,b\nc, \n", {"sep": ",", "numeric_ids": False}, "line 2: field 'item' is an empty"),
        ("a;b\n;c\n", {"sep": ";", "numeric_ids": False}, "line 2: field 'user' is an empty"),
        ("0 1 2 3\n0 1\n", {}, r"line 2: expected 4 fields like line 1, found 2 \(mixed"),
    ],
)
def test_edge_list_errors(tmp_path, text, kw, match):
    with pytest.raises(DataFormatError, match=match):
        read_edge_list(write(tmp_path, "e.txt", text), **kw)


def test_error_names_the_file(tmp_path):
    p = write(tmp_path, "bad.txt", "0 q\n")
    with pytest.raises(DataFormatError, match=r"bad\.txt"):
        read_edge_list(p)


def test_returns_dataframe(tmp_path):
    assert isinstance(read_edge_list(write(tmp_path, "e.txt", "1 2\n")), pd.DataFrame)


def test_byte_order_mark_and_windows_line_endings(tmp_path):
    bom = b"\xef\xbb\xbf"
    p = tmp_path / "train.txt"
    p.write_bytes(bom + b"0 1 2 \r\n1 2\r\n")
    df = read_adjacency_list(p)
    assert df["user"].tolist() == [0, 0, 1] and df["item"].tolist() == [1, 2, 2]
    p.write_bytes(bom + b"0 1\r\n0 2\r\n")
    assert read_edge_list(p)["user"].tolist() == [0, 0]
    # string ids: the BOM must not make a second user '\ufeff0' beside '0'
    assert read_edge_list(p, numeric_ids=False)["user"].tolist() == ["0", "0"]


def test_form_feed_is_white_space_not_a_line_break(tmp_path):
    df = read_adjacency_list(write(tmp_path, "t.txt", "0 1\x0c2\n"), allow_empty=True)
    assert df["item"].tolist() == [1, 2]


def test_non_ascii_white_space_between_valid_ids_is_read_like_the_edge_list_reader(tmp_path):
    # a no-break space between ids used to give "could not parse line" with no bad field
    df = read_adjacency_list(write(tmp_path, "t.txt", "0 1\u00a02\n1\u20033\n"))
    assert df["user"].tolist() == [0, 0, 1] and df["item"].tolist() == [1, 2, 3]
    edges = read_edge_list(write(tmp_path, "e.txt", "0 1\u00a0\n1\u20033\n"))
    assert edges["item"].tolist() == [1, 3]
    # a bad field next to such a space is still named
    with pytest.raises(DataFormatError, match=r"line 1.*item #2.*'x'"):
        read_adjacency_list(write(tmp_path, "b.txt", "0 1\u00a0x\n"))


def test_timestamps_are_exact(tmp_path):
    df = read_edge_list(write(tmp_path, "e.txt", "0 1 1 1700000000123456789\n"))
    assert df["timestamp"].tolist() == [1700000000123456789]


@pytest.mark.parametrize(
    "rating,value",
    [("4", 4.0), ("-1.5", -1.5), (".5", 0.5), ("5.", 5.0), ("1e-3", 1e-3), ("+2E2", 200.0)],
)
def test_plain_decimal_ratings_are_read(tmp_path, rating, value):
    df = read_edge_list(write(tmp_path, "r.txt", f"0 1 3\n1 2 {rating}\n"))
    assert df["rating"].tolist() == [3.0, value]


@pytest.mark.parametrize("rating", ["1_0", "\u0663", "\uff13", "1,5"])
def test_ratings_are_parsed_as_strictly_as_ids(tmp_path, rating):
    # Python's float took '1_0' as 10.0 and the Arabic-Indic digit '\u0663' as 3.0
    p = write(tmp_path, "r.txt", f"0 1 3\n1 2 {rating}\n")
    with pytest.raises(DataFormatError, match=r"r\.txt, line 2: field 'rating' must be a number"):
        read_edge_list(p, sep=" ")


@pytest.mark.parametrize("stamp", ["1.9", "1e3", "1.0", "1_000", "\u0661", "99999999999999999999"])
def test_timestamps_must_be_integers(tmp_path, stamp):
    # '1.9' used to be truncated to 1 and '1e3' read as 1000
    p = write(tmp_path, "t.txt", f"0 1 1 5\n1 2 1 {stamp}\n")
    with pytest.raises(
        DataFormatError, match=r"t\.txt, line 2: field 'timestamp' must be an integer"
    ):
        read_edge_list(p)


def test_negative_timestamps_are_read(tmp_path):
    df = read_edge_list(write(tmp_path, "t.txt", "0 1 1 -5\n1 2 1 +7\n"))
    assert df["timestamp"].tolist() == [-5, 7]


@pytest.mark.parametrize(
    "text,sep",
    [("user item\na b\nc d\n", None), ("User_ID,item_id\na,b\nc,d\n", ","),
     ("userId movie\na b\nc d\n", None)],
)  # fmt: skip
def test_header_with_string_ids_and_header_false_is_an_error(tmp_path, text, sep):
    # the docstring promised an error; a warning used to let the header become a pair
    p = write(tmp_path, "s.txt", text)
    with pytest.raises(
        DataFormatError, match=r"s\.txt, line 1: the first line .* looks like a header.*header=True"
    ):
        read_edge_list(p, sep=sep, numeric_ids=False)
    df = read_edge_list(p, sep=sep, header=True, numeric_ids=False)
    assert df["user"].tolist() == ["a", "c"] and df["item"].tolist() == ["b", "d"]
    # string ids that merely resemble column names are still ids
    df = read_edge_list(write(tmp_path, "ok.txt", "user1 item9\na b\n"), numeric_ids=False)
    assert df["user"].tolist() == ["user1", "a"]


@pytest.mark.parametrize(
    "sep,head,text",
    [
        (
            "::",
            "user::item::rating::timestamp",
            "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978300000\n",
        ),
        ("|", "user|item|rating", "1|1193|5\n1|661|3\n"),
        (":", "user:item:rating", "1:1193:5\n1:661:3\n"),
        (",", "user,item,rating", "1,1193,5\n1,661,3\n"),
        (None, "user item rating", "1 1193 5\n1 661 3\n"),
    ],
)
def test_header_true_refuses_a_numeric_first_line_whatever_the_sep(tmp_path, sep, head, text):
    # the header check split the line at white space, ',' and ';' only: with '::', '|' or
    # ':' a line of numbers was one token, "not a number", and was dropped as a header
    p = write(tmp_path, "ratings.dat", text)
    with pytest.raises(
        DataFormatError, match=r"ratings\.dat, line 1: header=True but this line is all numbers"
    ):
        read_edge_list(p, sep=sep, header=True)
    rows = read_edge_list(p, sep=sep)  # header=False: every line is a row
    assert rows["user"].tolist()[:2] == [1, 1] and len(rows) == text.count("\n")
    # a real header is still skipped with the same sep
    df = read_edge_list(write(tmp_path, "h.dat", f"{head}\n{text}"), sep=sep, header=True)
    assert df.equals(rows)
