#!/bin/sh
# The compose file's init step, with kc-m2m (fastapi_kc_m2m/cli.py), once per volume:
# - machine-a's signing key and certificate (kc-m2m keygen), its jwt.credential.certificate;
# - a CA (kc-m2m ca) and, signed by it (kc-m2m cert), the server certificates of Keycloak and nginx and
#   the client certificate of shipping (client-x509, RFC 8705 §2), whose subject DN the realm names;
# - the realm file to import, with those two values filled in.
# KEYS_DIR and REALM_DIR default to the compose file's volumes.
set -eu
keys=${KEYS_DIR:-/keys}
realm=${REALM_DIR:-/realm}
here=$(dirname "$0")
owned() {  # user, files: readable by the service that runs as that user (when run as root)
    owner=$1
    shift
    if [ "$(id -u)" = 0 ]; then chown "$owner" "$@"; fi
}
if [ ! -f "$keys/machine-a.key.pem" ]; then
    kc-m2m keygen --name machine-a --out "$keys" > "$keys/machine-a.certificate"
    owned "${KEY_OWNER:-10001}" "$keys"/machine-a.*  # the callers' user
fi
if [ ! -f "$keys/ca.key.pem" ]; then
    kc-m2m ca --out "$keys"  # ca.key.pem, ca.cert.pem
    sign() { kc-m2m cert --ca "$keys/ca.cert.pem" --ca-key "$keys/ca.key.pem" --out "$keys" "$@"; }
    sign --server --name keycloak --dns keycloak --dns localhost >/dev/null
    owned "${KEYCLOAK_OWNER:-1000}" "$keys"/keycloak.*  # the Keycloak image's user
    sign --server --name nginx --dns nginx --dns localhost >/dev/null  # nginx reads its key as root
    sign --name shipping > "$keys/shipping.subject"
    owned "${KEY_OWNER:-10001}" "$keys"/shipping.*
fi
certificate=$(cat "$keys/machine-a.certificate")
subject=$(cat "$keys/shipping.subject")
sed -e "s|\${MACHINE_A_CERTIFICATE}|$certificate|" -e "s|\${SHIPPING_SUBJECT_DN}|$subject|" \
    "$here/realm.template.json" > "$realm/demo-realm.json"
echo "realm file written with machine-a's certificate and shipping's subject DN"
