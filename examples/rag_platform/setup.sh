#!/bin/sh
# Make one ScholarSource key per user of the app (role submit, each with its own rate) and
# write users.json, which app.py reads: {"alice": {"tenant": "acme", "key": "ss_..."}, ...}.
# Run from this directory, server running or not (keys live in the store):
#   ./setup.sh                 users alice and bob of acme, carol of globex, at 60/m each
#   USER_RATE=5/m ./setup.sh   a smaller rate, to see the 429s sooner
#   RAG_USERS=/elsewhere/users.json ./setup.sh   write the file elsewhere
# Each key is printed once, by `keys create`, and kept only in users.json: keep it private.
set -eu
SCHOLARSOURCE=${SCHOLARSOURCE:-../../.venv/bin/scholarsource}
RATE=${USER_RATE:-60/m}
umask 077
USERS=${RAG_USERS:-users.json}
printf "{" > "$USERS"
sep=''
for entry in acme:alice acme:bob globex:carol; do
    tenant=${entry%%:*} user=${entry#*:}
    key=$("$SCHOLARSOURCE" keys create --config scholarsource.toml --tenant "$tenant" \
        --name "$user" --role submit --rate "$RATE")
    printf '%s\n  "%s": {"tenant": "%s", "key": "%s"}' "$sep" "$user" "$tenant" "$key" \
        >> "$USERS"
    sep=','
done
printf "\n}\n" >> "$USERS"
echo "wrote $USERS: alice and bob (acme), carol (globex), each at $RATE" >&2
