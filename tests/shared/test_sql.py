"""Unit tests for `shared.sql.Statement`: several statements as one, each a CTE with its `$n` parameters renumbered.
Pure string work, no database: what PostgreSQL receives is pinned here, the database tests run it."""

from __future__ import annotations

import pytest

from shared.sql import Statement


def test_without_ctes_the_final_query_goes_alone() -> None:
    st = Statement()
    assert st.sql("SELECT 1") == "SELECT 1"
    assert st.args == []


def test_one_cte_keeps_its_parameters_and_is_stripped() -> None:
    st = Statement()
    st.add("ins", "\n  INSERT INTO t (a, b) VALUES ($1, $2) RETURNING id  \n", ["x", 2])
    assert st.sql("SELECT id FROM ins") == (
        "WITH ins AS (\nINSERT INTO t (a, b) VALUES ($1, $2) RETURNING id\n)\nSELECT id FROM ins"
    )
    assert st.args == ["x", 2]


def test_later_ctes_are_renumbered_after_the_earlier_arguments() -> None:
    st = Statement()
    st.add("a", "INSERT INTO a VALUES ($1, $2)", [1, 2])
    st.add("b", "UPDATE b SET x = $2 WHERE id = $1", ["id", "x"])
    st.add("c", "DELETE FROM c WHERE id = $1", ["gone"])
    assert st.sql("SELECT 1") == (
        "WITH a AS (\nINSERT INTO a VALUES ($1, $2)\n),\n"
        "b AS (\nUPDATE b SET x = $4 WHERE id = $3\n),\n"
        "c AS (\nDELETE FROM c WHERE id = $5\n)\nSELECT 1"
    )
    assert st.args == [1, 2, "id", "x", "gone"]


def test_a_parameter_used_twice_is_renumbered_both_times() -> None:
    st = Statement()
    st.add("a", "SELECT $1", [0])
    st.add("b", "SELECT $1 WHERE $1 IS NOT NULL", [1])
    assert "b AS (\nSELECT $2 WHERE $2 IS NOT NULL\n)" in st.sql("SELECT 1")


def test_two_digit_parameters_are_renumbered_whole() -> None:
    st = Statement()
    st.add("a", "SELECT $1", [0] * 5)
    st.add("b", "SELECT $1, $10, $11", list(range(11)))
    assert "b AS (\nSELECT $6, $15, $16\n)" in st.sql("SELECT 1")


def test_a_cte_without_parameters_adds_no_arguments() -> None:
    st = Statement()
    st.add("a", "SELECT $1", ["x"])
    st.add("b", "DELETE FROM t WHERE expired", [])
    st.add("c", "SELECT $1", ["y"])
    assert "c AS (\nSELECT $2\n)" in st.sql("SELECT 1")
    assert st.args == ["x", "y"]


@pytest.mark.parametrize(("sql", "args"), [("SELECT $1, $2", ["only one"]), ("SELECT $0", ["x"]), ("SELECT $1", [])])
def test_a_parameter_without_its_argument_is_refused(sql: str, args: list[str]) -> None:
    st = Statement()
    with pytest.raises(ValueError, match="parameters"):
        st.add("a", sql, args)
    assert st.args == []
    assert st.sql("SELECT 1") == "SELECT 1"
