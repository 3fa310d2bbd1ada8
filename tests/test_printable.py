from hypothesis import given, strategies as st

from splitleak._printable import printable


def test_control_and_format_characters_become_escapes_and_letters_stay() -> None:
    assert printable("dec\x1b[31m") == "dec\\x1b[31m" and printable("a\rb\nc\td") == "a\\rb\\nc\\td"
    assert printable("x\u202ey") == "x\\u202ey" and printable("\x7f\x9b") == "\\x7f\\x9b"  # bidi override, DEL, 8-bit CSI
    assert printable("NoPeek α=20, noise σ=1, ε=1024") == "NoPeek α=20, noise σ=1, ε=1024"
    assert printable(12) == "12"


@given(st.text())
def test_the_result_is_always_printable_and_printable_text_is_unchanged(text: str) -> None:
    shown = printable(text)
    assert shown.isprintable()
    if text.isprintable():
        assert shown == text
