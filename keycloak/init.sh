#!/bin/sh
# The compose file's init step: create machine-a's signing key and certificate once (kc-m2m keygen), and
# write the realm file to import, with the certificate as machine-a's jwt.credential.certificate.
# KEYS_DIR and REALM_DIR default to the compose file's volumes.
set -eu
keys=${KEYS_DIR:-/keys}
realm=${REALM_DIR:-/realm}
here=$(dirname "$0")
if [ ! -f "$keys/machine-a.key.pem" ]; then
    kc-m2m keygen --name machine-a --out "$keys" > "$keys/machine-a.certificate"
    if [ "$(id -u)" = 0 ]; then chown "${KEY_OWNER:-10001}" "$keys"/machine-a.*; fi  # the callers' user
fi
certificate=$(cat "$keys/machine-a.certificate")
sed "s|\${MACHINE_A_CERTIFICATE}|$certificate|" "$here/realm.template.json" > "$realm/demo-realm.json"
echo "realm file written with machine-a's certificate"
