#!/bin/bash
# Runs in the Keycloak image once Keycloak is healthy: adds the client scope "orders:read" to the realm and
# makes it an optional scope of the callers. The realm import cannot: a top-level "clientScopes" array
# would replace Keycloak's built-in scopes (basic, roles, service_account, profile, ...).
set -euo pipefail
kcadm=/opt/keycloak/bin/kcadm.sh
# Keycloak serves HTTPS with a certificate of the demo CA: kcadm trusts it through a PKCS#12 truststore.
truststore=$(mktemp -d)/ca.p12
keytool -importcert -noprompt -alias demo-ca -file "${CA_FILE:-/keys/ca.cert.pem}" \
    -keystore "$truststore" -storetype PKCS12 -storepass demo-ca
"$kcadm" config truststore --trustpass demo-ca "$truststore"
"$kcadm" config credentials --server "${KEYCLOAK_URL:-https://keycloak:8443}" --realm master \
    --user "$KC_BOOTSTRAP_ADMIN_USERNAME" --password "$KC_BOOTSTRAP_ADMIN_PASSWORD"

id_of() {  # resource, field, value: the id of the entry whose field has that value
    "$kcadm" get "$1" -r demo --fields "id,$2" --format csv --noquotes | while IFS=, read -r id value; do
        if [ "$value" = "$3" ]; then echo "$id"; fi
    done
}

scope=$(id_of client-scopes name orders:read)
if [ -z "$scope" ]; then
    scope=$("$kcadm" create client-scopes -r demo -i -s name=orders:read -s protocol=openid-connect \
        -s 'attributes."include.in.token.scope"=true' -s 'attributes."display.on.consent.screen"=false')
fi
for client in machine-a reporting shipping; do
    "$kcadm" update "clients/$(id_of clients clientId "$client")/optional-client-scopes/$scope" -r demo
done
echo "orders:read is an optional scope of machine-a, reporting and shipping"
