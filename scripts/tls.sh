#!/usr/bin/env bash
# Makes a throwaway certificate authority for the TLS tests, in the directory given:
#   ca.pem                       the CA the servers' certificates chain to
#   server.pem, server-key.pem   for localhost and 127.0.0.1 (PostgreSQL, Redis, the broker)
#   client.pem, client-key.pem   a client certificate (CN=ordership-client) from the same CA
#   other-ca.pem                 a CA that signed nothing here: trusting it must fail
# Keys are RSA 2048 and the certificates last two days: nothing here is kept.
set -euo pipefail
dir=${1:?usage: scripts/tls.sh DIR}
mkdir -p "$dir"
cd "$dir"
quiet() { "$@" >/dev/null 2>&1 || { echo "scripts/tls.sh: failed: $*" >&2; exit 1; }; }

ca() { # name
  quiet openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=ordership test $1" \
    -keyout "$1-key.pem" -out "$1.pem" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign
}
signed() { # name subject extensions
  quiet openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$1-key.pem" -out "$1.csr"
  printf '%s\n' "$3" >"$1.ext"
  quiet openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 \
    -extfile "$1.ext" -out "$1.pem"
  rm -f "$1.csr" "$1.ext"
}

ca ca
ca other-ca
signed server /CN=localhost \
  "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth
keyUsage=critical,digitalSignature,keyEncipherment"
signed client /CN=ordership-client \
  "extendedKeyUsage=clientAuth
keyUsage=critical,digitalSignature,keyEncipherment"
rm -f other-ca-key.pem ca.srl
chmod 0600 ./*-key.pem
