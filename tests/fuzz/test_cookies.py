"""Cookie headers of any shape: never a 500; no valid signature, no session."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from bff.session.cookies import CookieSigner, read_cookie

from .conftest import Fuzzed
from .strategies import check, header_values
from .volume import fuzz_settings, tried

SIGNER = CookieSigner(["x" * 32, "y" * 32], salt="bff.session")


@fuzz_settings(3000)
@given(header=st.text(max_size=300), name=st.sampled_from(["bff", "__Host-bff", "a", ""]))
def test_read_cookie_and_unsign_never_raise(header: str, name: str) -> None:
    tried("cookie parser (pure)")
    value = read_cookie(header, name)
    assert value is None or isinstance(value, str)
    assert SIGNER.unsign(value) is None or value is not None


def _mutations() -> st.SearchStrategy[str]:
    good = SIGNER.sign("A" * 43)
    return st.one_of(
        st.integers(0, len(good)).map(lambda n: good[:n]),
        st.tuples(st.integers(0, len(good) - 1), st.characters()).map(
            lambda t: good[:t[0]] + t[1] + good[t[0] + 1:]),
        st.just(good + good), st.just(f'"{good}"'), st.just(good.replace("v1.", "v2.")),
    )


@fuzz_settings(400)
@given(cookie=st.one_of(header_values(300), _mutations().map(lambda v: b"bff=" + v.encode("utf-8")),
                        st.lists(_mutations(), max_size=3).map(
                            lambda vs: b"; ".join(b"bff=" + v.encode("utf-8") for v in vs))))
@example(cookie=b"bff=" + b"x" * 9000)
@example(cookie=b"bff=v1.%00.%00; bff=; =bff; ;;;")
def test_any_cookie_header_is_401_or_431_in_the_contract_shape(fuzzed: Fuzzed, cookie: bytes) -> None:
    tried("Cookie header -> /bff/user, /api")
    for path in (b"/bff/user", b"/api/things"):
        answer = fuzzed.driver.request("GET", path, headers=[
            (b"cookie", cookie), (b"x-csrf", b"1"), (b"user-agent", fuzzed.user_agent.encode())])
        check(fuzzed, answer, {401, 431}, cookie)
        assert not any(v.startswith("bff=") and "Max-Age=0" not in v for v in answer.all("set-cookie"))


def test_the_real_cookie_still_works_after_all_that(fuzzed: Fuzzed) -> None:
    answer = fuzzed.driver.request("GET", b"/bff/user", headers=[
        (b"cookie", b"junk=1; bff=" + fuzzed.cookie.encode()), (b"x-csrf", b"1"),
        (b"user-agent", fuzzed.user_agent.encode())])
    assert answer.status == 200 and answer.json()["sub"] == "fuzzer"
