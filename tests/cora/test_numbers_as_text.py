"""``df.cora.diff`` against a Cora that reads numbers back as numeric text (the docs type
``currentBalance`` as number or numeric string): a stored ``"450.25"`` equals a sent
``450.25``, so the preview agrees with what the server itself answers."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import recocora  # noqa: F401  (registers df.cora)
from recocora import CoraClient
from recocora.sandbox import FaultConfig, Sandbox

from .conftest import bulk_posts

AS_TEXT = FaultConfig(numbers_as_text=True)


def test_a_balance_read_back_as_text_is_unchanged(
    sb: Sandbox, client: CoraClient
) -> None:
    sb.put_cora_account({"externalId": "A1", "currentBalance": 450.25,
                         "metadata": {"filenumber": "F1", "batch": 7}})
    sb.set_faults(AS_TEXT)
    frame = pd.DataFrame({"externalId": ["A1", "A1"], "currentBalance": [450.25, 450.26],
                          "metadata.batch": [7, 7]}, index=["same", "changed"])
    same = frame.loc[["same"]].cora.diff(client=client, progress=False)
    assert same["cora_status"].tolist() == ["unchanged"]
    changed = frame.loc[["changed"]].cora.diff(client=client, progress=False)
    assert changed["cora_status"].tolist() == ["updated"]
    assert changed["cora_changes"].iloc[0] == [
        {"field": "currentBalance", "from": "450.25", "to": 450.26}]
    assert bulk_posts(sb) == []


NUMBERS = st.one_of(
    st.integers(-10**6, 10**6),
    st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: round(x, 2)),
)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stored=NUMBERS, sent=st.one_of(NUMBERS, st.just(None)), batch=NUMBERS)
def test_preview_agrees_with_the_servers_answer_when_numbers_read_back_as_text(
    sb: Sandbox, client_for: Callable[..., CoraClient], stored: float, sent: float | None,
    batch: float,
) -> None:
    sb.reset()
    sb.put_cora_account({"externalId": "A1", "currentBalance": stored,
                         "metadata": {"filenumber": "F1", "batch": batch}})
    sb.set_faults(AS_TEXT)
    frame = pd.DataFrame({"externalId": ["A1"], "currentBalance": [stored if sent is None
                                                                   else sent],
                          "metadata.batch": [batch]}, dtype=object)
    client = client_for()
    preview = frame.cora.diff(client=client, progress=False)
    dry = frame.cora.upsert(client=client, dry_run=True, progress=False)
    assert preview["cora_status"].tolist() == dry["cora_status"].tolist()
    event(str(dry["cora_status"].iloc[0]))
