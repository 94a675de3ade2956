import pytest

from mess.space import (
    FINAL,
    HeadConfig,
    exit_id,
    full_space,
    resolve_space,
    split_exit_id,
)


def test_full_space_has_36_distinct_heads():
    heads = full_space()
    assert len(heads) == 36
    assert len({h.id for h in heads}) == 36


def test_full_space_covers_every_valid_combination():
    expected = {
        (crm, b, rdi, head)
        for crm in (False, True)
        for b in range(5)
        for rdi in (False, True)
        for head in ("fcn", "dlv3")
        if not (rdi and b == 0)
    }
    assert {(h.crm, h.blocks, h.rdi, h.head) for h in full_space()} == expected


def test_head_id_round_trips():
    for h in full_space():
        assert HeadConfig.parse(h.id) == h
    assert HeadConfig.parse("crm1-b2-rdi1-dlv3") == HeadConfig(True, 2, True, "dlv3")


@pytest.mark.parametrize(
    "bad", ["crm2-b0-rdi0-fcn", "crm1-b5-rdi0-fcn", "crm1-b0-rdi1-fcn", "crm1-b1-rdi0-psp", ""]
)
def test_invalid_head_ids_are_refused(bad):
    with pytest.raises(ValueError):
        HeadConfig.parse(bad)


def test_resolve_named_and_listed_spaces():
    assert len(resolve_space("full")) == 36
    tiny = resolve_space("tiny")
    assert 1 <= len(tiny) <= 5
    listed = resolve_space("crm1-b1-rdi0-fcn, crm0-b0-rdi0-dlv3,crm1-b1-rdi0-fcn")
    assert [h.id for h in listed] == ["crm0-b0-rdi0-dlv3", "crm1-b1-rdi0-fcn"]
    with pytest.raises(ValueError):
        resolve_space("bogus")


def test_exit_ids_split_back_into_position_and_head():
    h = HeadConfig.parse("crm1-b2-rdi1-dlv3")
    eid = exit_id("layer3.2", h)
    assert eid == "layer3.2/crm1-b2-rdi1-dlv3"
    assert split_exit_id(eid) == ("layer3.2", h)
    with pytest.raises(ValueError):
        split_exit_id(FINAL)
    with pytest.raises(ValueError):
        split_exit_id("no-slash")
