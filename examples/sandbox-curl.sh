#!/usr/bin/env bash
# Talk to the sandbox (or the real services) with nothing but curl and openssl, signing
# each Cora write exactly as the API contract says. Start a sandbox first:
#   recocora sandbox --port 8765 --cora-key cora_org_demo.s3cret --recotap-key rtp_demo --seed demo
# then: bash examples/sandbox-curl.sh
set -euo pipefail

CORA=${CORA_BASE_URL:-http://127.0.0.1:8765}
RECOTAP=${RECOTAP_BASE_URL:-http://127.0.0.1:8765/api/v1}
KEY=${CORA_API_KEY:-cora_org_demo.s3cret}
RKEY=${RECOTAP_API_KEY:-rtp_demo}
SECRET=${KEY#*.}              # the secret is everything after the first '.'
PREFIX=$(printf '%s' "$CORA" | sed -E 's#^https?://[^/]+##')   # a base URL's own path is signed too

# cora_write METHOD PATH BODY: sign <timestamp>.<METHOD>.<path?query>.<sha256(body)> and send.
cora_write() {
  local method=$1 path=$2 body=$3 ts hash sig
  ts=$(date +%s)
  hash=$(printf '%s' "$body" | sha256sum | cut -d' ' -f1)
  sig=$(printf '%s' "$ts.$method.$PREFIX$path.$hash" | openssl dgst -sha256 -hmac "$SECRET" | sed 's/^.* //')
  curl -sS -X "$method" "$CORA$path" \
    -H "Authorization: Bearer $KEY" -H "X-Cora-Timestamp: $ts" -H "X-Cora-Signature: $sig" \
    -H 'Content-Type: application/json' --data-raw "$body"
  echo
}

echo "# Cora: dry-run bulk upsert (one new account, one update, one missing fields)"
cora_write POST /external-api/accounts/bulk-upsert '{"accounts":[{"externalId":"curl-001","portfolioId":"pf_consumer_2024","phoneNumber":"+15555550111","metadata":{"filenumber":"F-CURL-1"}},{"externalId":"ext-000001","bucket":"90+"},{"externalId":"curl-002"}],"dryRun":true,"includeChanges":true}'

echo "# Cora: read accounts (GETs carry only Authorization)"
curl -sS "$CORA/external-api/accounts?externalIds=ext-000001,nope" -H "Authorization: Bearer $KEY" | head -c 300
echo

echo "# Cora: signed PATCH of one account"
cora_write PATCH /external-api/accounts/ext-000002 '{"clientStatus":"payment_plan"}'

echo "# Recotap: unmapped accounts"
curl -sS "$RECOTAP/accounts/missing-external-ids?limit=2" -H "X-Api-Key: $RKEY"
echo

echo "# Recotap: map one external id"
curl -sS -X PATCH "$RECOTAP/accounts/external-ids" -H "X-Api-Key: $RKEY" \
  -H 'Content-Type: application/json' \
  --data-raw '{"mappings":[{"domain":"nosuchdomain.example","externalId":"crm-curl-1"}]}'
echo
