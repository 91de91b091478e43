"""How scheduler replicas share the checks: rendezvous hashing, on its own."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.health.shares import owner, share

CHECKS = [("production", f"svc-{n:04d}") for n in range(1000)] + [("staging", "health")]
SOME = CHECKS[::10]  # enough for the properties, few enough for many examples
member_names = st.lists(
    st.text("abcdef0123456789", min_size=4, max_size=12), min_size=1, max_size=8, unique=True
)


@settings(max_examples=50, deadline=None)
@given(member_names)
def test_every_check_is_run_by_exactly_one_member(members: list[str]):
    shares = {member: share(SOME, members, member) for member in members}
    together = [check for mine in shares.values() for check in mine]
    assert sorted(together) == sorted(SOME)
    for member, mine in shares.items():  # each in the configured order
        assert mine == [c for c in SOME if owner(c, members) == member]


@settings(max_examples=50, deadline=None)
@given(member_names.filter(lambda m: len(m) >= 2), st.data())
def test_a_member_leaving_moves_only_its_own_checks(members: list[str], data: st.DataObject):
    gone = data.draw(st.sampled_from(members))
    left = [m for m in members if m != gone]
    for check in SOME:
        before, after = owner(check, members), owner(check, left)
        assert before in (after, gone)
    # ...and the order members are listed in does not matter.
    assert all(owner(c, members) == owner(c, list(reversed(members))) for c in CHECKS[:50])


def test_the_checks_are_shared_about_evenly_and_an_unknown_member_runs_none():
    members = ["a1b2c3", "d4e5f6", "0a0b0c", "99aa88"]
    sizes = [len(share(CHECKS, members, m)) for m in members]
    assert sum(sizes) == len(CHECKS) and min(sizes) > 180 and max(sizes) < 330, sizes
    assert share(CHECKS, members, "stranger") == []
    assert share(CHECKS, ["solo"], "solo") == CHECKS
