"""The answer variants the vendors' docs allow (api-contract.md section 3), each a
FaultConfig switch: checked here over plain HTTP, so the client tests that rely on them
meet the behaviour they name."""

from __future__ import annotations

from recocora.sandbox import FaultConfig

MUELLER = "müller-bau.de"
MUELLER_PUNY = "xn--mller-bau-q9a.de"


def test_no_date_leaves_the_date_header_out(sb, cora, rtp):
    sb.set_faults(FaultConfig(no_date=True))
    assert "Date" not in cora.get_accounts(["A1"]).headers
    assert "Date" not in rtp.missing().headers
    sb.set_faults(FaultConfig())
    assert "Date" in rtp.missing().headers


def test_numbers_as_text_changes_reads_only(sb, cora):
    sb.put_cora_account({"externalId": "A1", "currentBalance": 450.25,
                         "metadata": {"batch": 7, "ok": True}})
    sb.set_faults(FaultConfig(numbers_as_text=True))
    listed = cora.get_accounts(["A1"]).json()["accounts"][0]
    one = cora.account("A1")
    for doc in (listed, one):
        assert doc["currentBalance"] == "450.25"
        assert doc["metadata"] == {"batch": "7", "ok": True}
    assert sb.cora_account("A1")["currentBalance"] == 450.25


def test_unicode_domains_are_listed_in_unicode_and_matched_only_so(sb, rtp):
    sb.add_recotap_account(domain=MUELLER, name="Müller Bau")
    sb.set_faults(FaultConfig(unicode_domains=True))
    assert rtp.missing().json()["data"] == [{"name": "Müller Bau", "domain": MUELLER}]
    listed = rtp.accounts(domains=f'["{MUELLER_PUNY}"]').json()["data"]["data"]
    assert listed == []
    listed = rtp.accounts(domains=f'["https://www.{MUELLER}/x"]').json()["data"]["data"]
    assert [a["domain"] for a in listed] == [MUELLER]
    assert rtp.map_ok([{"domain": MUELLER_PUNY, "externalId": "c1"}]) == {
        "matched": 0, "updated": 0, "notFound": [MUELLER_PUNY]}
    assert rtp.map_ok([{"domain": MUELLER, "externalId": "c1"}]) == {
        "matched": 1, "updated": 1, "notFound": []}


def test_unwritten_accounts_are_matched_but_not_updated(sb, rtp):
    for name in ("a", "b"):
        sb.add_recotap_account(domain=f"{name}.com", name=name)
    sb.set_faults(FaultConfig(p_unwritten=1.0))
    assert rtp.map_ok([{"domain": "a.com", "externalId": "1"},
                       {"domain": "b.com", "externalId": "2"}]) == {
        "matched": 2, "updated": 0, "notFound": []}
    assert {a["externalId"] for a in sb.recotap_accounts()} == {None}


def test_unwritten_picks_the_same_domains_for_a_seed():
    config = FaultConfig(seed=3, p_unwritten=0.5)
    picks = [config.unwritten(f"d{i}.com") for i in range(200)]
    assert picks == [config.unwritten(f"d{i}.com") for i in range(200)]
    assert 50 < sum(picks) < 150


def test_not_found_normal_echoes_the_servers_form(sb, rtp):
    sb.set_faults(FaultConfig(not_found_normal=True))
    answer = rtp.map_ok([{"domain": "HTTPS://WWW.Nowhere.COM/x", "externalId": "1"}])
    assert answer["notFound"] == ["nowhere.com"]


def test_bare_answers_have_no_envelope(sb, rtp):
    sb.add_recotap_account(domain="a.com", name="A")
    sb.set_faults(FaultConfig(bare_answers=True))
    assert rtp.missing().json() == [{"name": "A", "domain": "a.com"}]
    page = rtp.accounts().json()
    assert set(page) == {"data", "nextCursor", "hasNextPage", "syncTimestamp"}
    assert rtp.map(
        [{"domain": "a.com", "externalId": "1"}]
    ).json() == {"matched": 1, "updated": 1, "notFound": []}


def test_errors_without_data_and_unauthorized_text(sb, rtp):
    sb.set_faults(FaultConfig(errors_without_data=True, unauthorized_text=True))
    refused = rtp.map([])
    assert refused.status_code == 400
    assert "data" not in refused.json()
    for resp in (rtp.missing(key="wrong"), rtp.missing(send_key=False)):
        assert resp.status_code == 401
        assert resp.json()["customMessage"] == "Unauthorized access"
        assert "data" not in resp.json()


def test_a_forced_429_without_retry_after(sb, rtp):
    sb.force_429(1, retry_after=None)
    resp = rtp.missing()
    assert resp.status_code == 429
    assert "Retry-After" not in resp.headers
    assert rtp.missing().status_code == 200


def test_the_last_page_still_carries_a_cursor(sb, rtp):
    for i in range(3):
        sb.add_recotap_account(domain=f"c{i}.com", name=f"C{i}")
    page = rtp.accounts(limit=5).json()["data"]
    assert page["hasNextPage"] is False
    assert isinstance(page["nextCursor"], str)
